"""Turn an API payload into a domain ``Event``, or into field-level errors a client can act on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

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
    """Validate what the envelope model cannot know: the event type, its timestamp (in
    the supported range), the properties declared for that type in the rule file, and
    that every value can be stored. Traits and undeclared properties are kept as they
    are."""
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
    for name in ("user_id", "event_id"):
        if "\x00" in (payload.get(name) or ""):
            errors.append(_error(("body", name), _NUL, "unstorable_value"))
    for name, value in (("properties", properties), ("user_traits", payload.get("user_traits"))):
        why = _unstorable(value)
        if why:
            errors.append(_error(("body", name), why, "unstorable_value"))
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


_NUL = "contains the character U+0000, which cannot be stored"


def _unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be stored, if it cannot: checked here so that it is the
    client's error, not a failed commit of everyone's events. (PostgreSQL refuses
    U+0000 in text, and it would reach text columns through traits and templates.)"""
    try:
        stored = orjson.dumps(value)
    except TypeError as exc:
        return f"cannot be stored: {exc} (integers must fit in 64 bits, nesting in 255 levels)"
    # The bytes test is quick but also matches an escaped backslash before "u0000".
    return _NUL if b"\\u0000" in stored and _holds_nul(value) else None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
