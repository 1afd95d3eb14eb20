"""Sample values for checking templates before anything is sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herald.rules.definition import EventType

_SAMPLES: dict[str, Any] = {
    "string": "sample",
    "number": 1.5,
    "integer": 1,
    "boolean": True,
    "object": {},
    "array": [],
}


def sample_context(event_type: EventType, traits: Mapping[str, str]) -> dict[str, Any]:
    """A render context with every declared property and trait present: a template that
    renders against it refers only to names the rule file declares."""
    return {
        "event": {
            "id": "evt_sample",
            "type": event_type.name,
            "user_id": "u_sample",
            "timestamp": "2025-01-01T00:00:00Z",
            "properties": {
                name: _SAMPLES[spec.type] for name, spec in event_type.properties.items()
            },
        },
        "user": {
            "id": "u_sample",
            **{name: _SAMPLES.get(t, "sample") for name, t in traits.items()},
        },
    }
