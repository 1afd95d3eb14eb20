"""Turn an API payload into a domain ``Event``, or into field-level errors a client can act on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from herald.domain.model import Event, derived_event_id
from herald.domain.properties import validate_properties
from herald.domain.timeutil import InvalidTimestamp, parse_timestamp
from herald.rules.definition import RuleSet


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a payload was refused, as FastAPI-style ``{"loc", "msg", "type"}`` errors."""

    errors: list[dict[str, Any]]


def _error(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": kind}


def to_event(payload: Mapping[str, Any], ruleset: RuleSet) -> Event | Rejection:
    """Validate what the envelope model cannot know: the event type, its timestamp and
    the properties declared for that type in the rule file. Traits and undeclared
    properties are kept as they are."""
    errors = []
    event_type = payload["event_type"]
    spec = ruleset.event_types.get(event_type)
    if spec is None:
        errors.append(
            _error(
                ("body", "event_type"),
                f"unknown event type {event_type!r}; supported: "
                + ", ".join(sorted(ruleset.event_types)),
                "unknown_event_type",
            )
        )
    try:
        timestamp = parse_timestamp(payload["event_timestamp"])
    except InvalidTimestamp as exc:
        errors.append(_error(("body", "event_timestamp"), str(exc), "invalid_timestamp"))
    properties = payload.get("properties") or {}
    if spec is not None:
        for problem in validate_properties(properties, spec.properties):
            errors.append(_error(("body", *problem.loc), problem.msg, "invalid_property"))
    if errors:
        return Rejection(errors)
    user_id = payload["user_id"]
    event_id = payload.get("event_id") or derived_event_id(user_id, event_type, timestamp)
    return Event(
        event_id=event_id,
        user_id=user_id,
        event_type=event_type,
        timestamp=timestamp,
        properties=properties,
        user_traits=payload.get("user_traits") or {},
    )
