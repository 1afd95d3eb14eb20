"""Readers of a rule's keys (limit, category, after, max_age, template), each telling ``bad`` what
is wrong with the value it was given and returning None for it."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from herald.rules.definition import After, Category, EventType, MaxAge

Problem = Callable[[str], None]  # takes what is wrong, without the rule's name

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_LONGEST_WINDOW_S = 3650 * 86_400  # ten years; event times are bounded to suit (timeutil)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# How alike a mistyped name or value and the one it was meant as are, at least (difflib's
# ratio, in lower case): `triger` and `trigger` are 0.92, `emial` and `email` 0.8, `amout`
# and `amount` 0.91, `coupon` and `country` 0.62, which are two names.
ALIKE = 0.75


def did_you_mean(given: Any, known: Iterable[str]) -> str:
    """``: did you mean `email`?`` naming the one of ``known`` that ``given``, a value a
    rule file does not know, looks mistyped from (case aside), or nothing."""
    if not isinstance(given, str):
        return ""
    by_lower = {value.lower(): value for value in known}
    close = difflib.get_close_matches(given.lower(), by_lower, n=1, cutoff=ALIKE)
    return f": did you mean `{by_lower[close[0]]}`?" if close else ""


def read_enum(kind: Any, value: Any, field: str, bad: Problem) -> Any:
    try:
        return kind(value)
    except (ValueError, TypeError):
        known = [m.value for m in kind]
        bad(f"unknown {field} {value!r}{did_you_mean(value, known)} (known: {', '.join(known)})")
        return None


# Why a rule that messages the user must say which kind it is: no default is safe, as
# one would either skip consent for marketing or hold back a password reset.
_CATEGORY_CHOICE = (
    "`marketing` is sent only with the user's consent (a stated marketing_opt_in must be "
    "true) and honours unsubscribes; `transactional` is about the user's own account and "
    "is sent whatever they opted in to or unsubscribed from"
)


def read_category(raw: Any, channel: Any, bad: Problem) -> Category | None:
    if channel == "internal" and raw not in (None, Category.INTERNAL.value):
        # Consent would be asked of the user an alert is about, and skip the alert.
        bad(f"`category: {raw}` is for rules that message the user; an internal alert is internal")
        return None
    if channel not in ("email", "sms"):  # internal alerts, or a channel said to be unknown
        return read_enum(Category, Category.INTERNAL if raw is None else raw, "category", bad)
    if raw is None:
        bad(f"needs `category: marketing` or `category: transactional`: {_CATEGORY_CHOICE}")
        return None
    category: Category | None = read_enum(Category, raw, "category", bad)
    if category is Category.INTERNAL:
        bad(
            f"`category: internal` is for `channel: internal` (alerts to the team); an {channel} "
            f"rule messages the user, so it is marketing or transactional: {_CATEGORY_CHOICE}"
        )
        return None
    return category


def read_after(
    raw: Any, event_types: Mapping[str, EventType], refused_types: frozenset[str], bad: Problem
) -> After | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "event" not in raw or "within" not in raw:
        bad("`after` needs `event` and `within` (e.g. {event: signup_completed, within: 24h})")
        return None
    unknown = sorted(str(key) for key in raw if key not in ("event", "within"))
    if unknown:
        # A key meant to narrow the window (`count:`, `where:`) would otherwise be ignored.
        bad(f"`after` holds unknown key(s) {unknown}: it takes only `event` and `within`")
        return None
    # Both keys are read whatever the other holds, so that one check lists both mistakes.
    anchor = raw["event"]
    declared = isinstance(anchor, str) and anchor in event_types
    # One declared wrongly is reported as such, not again as each anchor naming it.
    if not declared and is_undeclared(anchor, event_types, refused_types):
        bad(
            f"`after.event: {anchor}` is not a declared event type"
            f"{did_you_mean(anchor, event_types)} ({sorted(event_types)})"
        )
    window = _read_window(raw["within"], bad)
    if not declared or window is None:
        return None
    return After(anchor, *window)


def _read_window(within: Any, bad: Problem) -> tuple[timedelta, str] | None:
    """An ``after.within`` as a timedelta and as written (``24h``); None when it is none."""
    # Only an anchor at the trigger's very microsecond would be in a window of 0s: a slip.
    no_window = "is no window: only an event at the trigger's very instant would be in it"
    return _read_duration(within, "after.within", "window", no_window, bad)


def read_max_age(raw: Any, bad: Problem) -> MaxAge | None:
    if raw is None:
        return None
    age = _read_duration(raw, "max_age", "age", "is no age: every trigger would be too old", bad)
    return MaxAge(*age) if age is not None else None


def _read_duration(
    value: Any, key: str, noun: str, if_zero: str, bad: Problem
) -> tuple[timedelta, str] | None:
    """The duration ``key`` holds (a ``noun``, from 1s to 3650d) as a timedelta and as
    written (``24h``); None when it is none (said to ``bad``)."""
    match = _DURATION.match(str(value))
    if not match:
        bad(f"`{key}: {value}` is not a duration like 30m, 24h or 7d{_instead(value)}")
        return None
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds == 0:
        bad(f"`{key}: {value}` {if_zero} (the shortest {noun} is 1s; write 1s, 30m, 24h or 7d)")
        return None
    if seconds > _LONGEST_WINDOW_S:
        bad(f"`{key}: {value}` is longer than the longest {noun}, 3650d")
        return None
    return timedelta(seconds=seconds), f"{int(match[1])}{match[2]}"


# A duration as people write it (`24 hours`, `2 weeks`, `1.5h`, `1h30m`): each part a
# number and a unit, spelt out or not.
_PART = r"(\d+(?:\.\d+)?)\s*([a-z]+)"
_PARTS = re.compile(rf"\s*(?:{_PART}\s*)+", re.IGNORECASE)
_PART_ONE = re.compile(_PART, re.IGNORECASE)
_UNIT_SECONDS = {
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], 1),
    **dict.fromkeys(["m", "min", "mins", "minute", "minutes"], 60),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], 3600),
    **dict.fromkeys(["d", "day", "days"], 86_400),
    **dict.fromkeys(["w", "wk", "wks", "week", "weeks"], 7 * 86_400),
}
_WHOLE_NUMBER = re.compile(r"\s*(\d+)\s*")


def _instead(within: Any) -> str:
    """``: write 24h`` for a duration written as people do (``24 hours``, ``2w``,
    ``1h30m``, ``1.5h``), in the one unit the rule file takes; what to add to a number
    alone, whose unit is anyone's guess; empty for anything else."""
    text = str(within)
    bare = _WHOLE_NUMBER.fullmatch(text)
    if bare is not None:
        n = int(bare[1])
        return f": a number alone has no unit: write {n}s, {n}m, {n}h or {n}d"
    if _PARTS.fullmatch(text) is None:
        return ""
    parts = [(number, unit.lower()) for number, unit in _PART_ONE.findall(text)]
    if any(unit not in _UNIT_SECONDS for _, unit in parts):
        return ""
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds < 1 or seconds != int(seconds):
        return ""
    # In the unit it was written in (24 hours: 24h), else the largest that holds it whole.
    (number, unit), *others = parts
    as_written = not others and number.isdigit() and unit[0] in _UNITS
    units = unit[0] if as_written else "dhms"
    letter = next(letter for letter in units if seconds % _UNITS[letter] == 0)
    return f": write {int(seconds) // _UNITS[letter]}{letter}"


def is_undeclared(name: Any, event_types: Mapping[str, EventType], refused: frozenset[str]) -> bool:
    """Whether ``name`` is no event type of the rule file's. One the file declares wrongly
    is not: its declaration is the problem, reported once, not each rule naming it."""
    return not isinstance(name, str) or (name not in event_types and name not in refused)


def is_folder_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.strip() == value != ""
        and not any(sep in value for sep in "/\\\x00")
        and value not in (".", "..")
    )
