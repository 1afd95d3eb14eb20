"""The declarations of a rule file: its `events` (each type with its property schema) and
its `traits` (what templates may read of a user). Problems go to the caller's list, each
naming the event type, property or trait it is about."""

from __future__ import annotations

import re
from typing import Any

from herald.domain.properties import PROPERTY_TYPES, PropertySpec
from herald.rules.definition import EventType

# Event types and rule ids: short identifiers, safe in metrics labels and dedup keys.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def read_event_types(raw: Any, problems: list[str]) -> dict[str, EventType]:
    if not isinstance(raw, dict) or not raw:
        problems.append("`events` must map each event type to its definition")
        return {}
    types = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            problems.append(
                f"event type {name!r}: use 1-64 letters, digits and underscores, "
                "starting with a letter"
            )
            continue
        spec = {} if spec is None else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("properties") or {}, dict):
            problems.append(
                f"event {name}: must be a mapping with an optional `description` and "
                "`properties` mapping each property to its type"
            )
            continue
        props = {}
        for prop, pspec in (spec.get("properties") or {}).items():
            problem = _property_problem(prop, pspec)
            if problem:
                problems.append(f"event {name}: property {prop}: {problem}")
                continue
            pspec = pspec if isinstance(pspec, dict) else {"type": pspec}
            enum = pspec.get("enum")
            props[prop] = PropertySpec(
                prop,
                pspec["type"],
                bool(pspec.get("required", False)),
                pspec.get("minimum"),
                pspec.get("maximum"),
                tuple(enum) if enum else None,
            )
        types[name] = EventType(name, props, str(spec.get("description", "")))
    return types


def _property_problem(name: Any, spec: Any) -> str | None:
    """What is wrong with one property's declaration, if anything."""
    if not isinstance(name, str):
        return "the name must be a string"
    spec = spec if isinstance(spec, dict) else {"type": spec}
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in PROPERTY_TYPES:
        return f"type must be one of {list(PROPERTY_TYPES)}"
    for bound in ("minimum", "maximum"):
        value = spec.get(bound)
        if value is None:
            continue
        if kind not in ("number", "integer"):
            return f"`{bound}` applies to numbers, not to {kind}"
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return f"`{bound}` must be a number, got {value!r}"
    if spec.get("enum") is not None and not isinstance(spec["enum"], list):
        return "`enum` must be a list of the allowed values"
    return None


def read_traits(raw: Any, problems: list[str]) -> dict[str, str]:
    """The declared traits (name -> type) templates may read."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append("`traits` must map each trait to its type")
        return {}
    traits = {}
    for name, kind in raw.items():
        if not isinstance(name, str) or not isinstance(kind, str) or kind not in PROPERTY_TYPES:
            problems.append(f"trait {name!r}: type must be one of {list(PROPERTY_TYPES)}")
            continue
        traits[name] = kind
    return traits
