"""Turn an API payload into a domain ``Event``, or into field-level errors a client can act on."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from herald.domain.bidi import BIDI_FORMATTING_CLASS
from herald.domain.model import Event, derived_event_id
from herald.domain.properties import validate_properties, with_integers
from herald.domain.timeutil import InvalidTimestamp, iso, parse_timestamp, readable_span
from herald.rules.definition import RuleSet


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a payload was refused, as ``{"loc", "msg", "type"}`` errors located within the
    event (``["properties", "amount"]``): the API places them in its request."""

    errors: list[dict[str, Any]]


def _error(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": kind}


class Horizon(NamedTuple):
    """The latest event time ingestion takes: ``now`` on Herald's clock, plus the ``skew``
    a sender's clock may be ahead of it."""

    now: datetime
    skew: timedelta
    latest: datetime  # now + skew, added once per request rather than once per event


def horizon(now: datetime, skew_s: float) -> Horizon:
    skew = timedelta(seconds=skew_s)
    return Horizon(now, skew, now + skew)


def to_event(
    payload: Mapping[str, Any], ruleset: RuleSet, horizon: Horizon | None = None
) -> Event | Rejection:
    """Validate what the envelope model cannot know: the event type, its timestamp (in
    the supported range, and no later than ``horizon`` when one is given), the properties
    declared for that type in the rule file, and that every value can be stored. Traits
    and undeclared properties are kept as they are."""
    errors = []
    event_type = payload["event_type"]
    spec = ruleset.event_types.get(event_type)
    if spec is None:
        errors.append(
            _error(
                ("event_type",),
                f"unknown event type {event_type!r}; supported: "
                + ", ".join(sorted(ruleset.event_types)),
                "unknown_event_type",
            )
        )
    try:
        timestamp = parse_timestamp(payload["event_timestamp"])
    except InvalidTimestamp as exc:
        errors.append(_error(("event_timestamp",), str(exc), "invalid_timestamp"))
    else:
        if horizon is not None and timestamp > horizon.latest:
            why = _ahead(payload["event_timestamp"], timestamp, horizon)
            errors.append(_error(("event_timestamp",), why, "future_timestamp"))
    properties = payload.get("properties") or {}
    if spec is not None:
        for problem in validate_properties(properties, spec.properties):
            errors.append(_error(problem.loc, problem.msg, "invalid_property"))
    for name in ("user_id", "event_id"):
        wrong = id_problem(payload.get(name) or "")
        if wrong:
            errors.append(_error((name,), wrong, "invalid_id"))
    for name, value in (("properties", properties), ("user_traits", payload.get("user_traits"))):
        unstorable = _unstorable(value)
        if unstorable:
            loc, why = unstorable
            errors.append(_error((name, *loc), why, "unstorable_value"))
    if errors:
        return Rejection(errors)
    if spec is not None and spec.integers:
        properties = with_integers(properties, spec.integers)
    traits = payload.get("user_traits") or {}
    if traits and ruleset.integer_traits:
        traits = with_integers(traits, ruleset.integer_traits)
    user_id = payload["user_id"]
    event_id = payload.get("event_id") or derived_event_id(user_id, event_type, timestamp)
    return Event(
        event_id=event_id,
        user_id=user_id,
        event_type=event_type,
        timestamp=timestamp,
        properties=properties,
        user_traits=traits,
    )


def _ahead(given: str, timestamp: datetime, horizon: Horizon) -> str:
    # Refused, not stored: an event's traits win over those of every event dated before
    # it, so one dated next year by a wrong clock would keep a user's opt-in, or email,
    # against anything they said until then; and its day would hold a daily limit.
    ahead, most = readable_span(timestamp - horizon.now), readable_span(horizon.skew)
    return (
        f"{given!r} is {'more than ' if ahead == most else ''}{ahead} ahead of Herald's clock "
        f"({iso(horizon.now)}); an event may be at most {most} in the "
        "future (HERALD_CLOCK_SKEW): check the sending host's clock"
    )


_NUL = "contains the character U+0000, which cannot be stored"
_NOT_FINITE = "is not a finite number: NaN, Infinity and numbers beyond 1.8e308 are not JSON values"
# Ids go into log lines, URLs and the CLI's tables: a line break in one could forge a log
# line, and a bidirectional override make it display as another user's id.
_FORBIDDEN = rf"\x00-\x1f\x7f-\x9f{BIDI_FORMATTING_CLASS}"
_UNPRINTABLE = re.compile(f"[{_FORBIDDEN}]")


# What id_problem accepts, as a JSON Schema (ECMA-262) pattern for the OpenAPI document:
# no control or bidirectional formatting character, and neither end one that str.strip()
# removes (the whitespace that is no control character: space, U+00A0, U+1680,
# U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). A test holds the two to the
# same answer for every character.
_EDGE = rf"{_FORBIDDEN}\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ID_PATTERN = rf"^[^{_EDGE}](?:[^{_FORBIDDEN}]*[^{_EDGE}])?$"


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a user or event id, or None. Ids are kept exactly as sent, so
    one with whitespace at either end is refused rather than trimmed into another id."""
    if value != value.strip():
        return "must not start or end with whitespace" if value.strip() else "must not be blank"
    found = None if value.isprintable() else _UNPRINTABLE.search(value)  # quick test first
    if found is None:
        return None
    character = found[0]
    if character == "\x00":
        return _NUL
    if unicodedata.category(character) == "Cc":
        return f"contains the control character U+{ord(character):04X}; ids must be printable"
    return (
        f"contains U+{ord(character):04X} {unicodedata.name(character)}, which is not allowed "
        "in an id: it can make the id display as another"
    )


Loc = tuple[str | int, ...]


def _unstorable(value: Any) -> tuple[Loc, str] | None:
    """Where and why ``value`` cannot be stored, if it cannot: checked here so that it is
    the client's error, not a failed commit of everyone's events. (PostgreSQL refuses
    U+0000 in text, and it would reach text columns through traits and templates.)"""
    try:
        stored = orjson.dumps(value)
    except TypeError as exc:
        loc = _find(value, _too_large)
        if loc is not None:
            return loc, _TOO_LARGE
        why = f"cannot be stored: {exc} (integers must fit in 64 bits, nesting in 255 levels)"
        return (), why
    # Both byte tests are quick hints, confirmed by a walk: orjson writes NaN and the
    # infinities as null, and an escaped backslash before "u0000" also matches. With
    # find, not `in`: bytes' `in` first reads its operand as an integer, and makes and
    # drops a TypeError each time (about 1,900 instructions, four times an event).
    if stored.find(b"null") != -1:
        loc = _find(value, _not_finite)
        if loc is not None:
            return loc, _NOT_FINITE
    if stored.find(b"\\u0000") != -1:
        loc = _find(value, _holds_nul)
        if loc is not None:
            return loc, _NUL
    return None


_TOO_LARGE = "is an integer beyond 64 bits, which cannot be stored (send it as a string)"


def _too_large(value: Any) -> bool:
    # The range of JSON integers the stored columns take: signed, and unsigned, 64 bits.
    return isinstance(value, int) and not -(2**63) <= value < 2**64


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _holds_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _find(value: Any, bad: Callable[[Any], bool]) -> Loc | None:
    """The location of the first part of ``value`` (keys included) that is ``bad``."""
    if bad(value):
        return ()
    if isinstance(value, dict):
        for key, item in value.items():
            if bad(key):
                return (key,)
            inner = _find(item, bad)
            if inner is not None:
                return (key, *inner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            inner = _find(item, bad)
            if inner is not None:
                return (index, *inner)
    return None
