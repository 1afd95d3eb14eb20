"""Time in Herald is UTC, carried as aware datetimes and stored as integer microseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidTimestamp(ValueError):
    pass


# Event times outside these bounds are refused: rule windows (at most ten years, see the
# rule loader) and day arithmetic then never step outside what a datetime can hold.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


# ISO 8601 in its extended form: a calendar date, optionally a time (T, t or a space
# between, as RFC 3339 allows), optionally an offset. ``datetime.fromisoformat`` alone
# would also take any character between date and time, "11.Z" and offsets in seconds.
# ASCII digits: Python's \d would also match other scripts' digits, which no date has.
_ISO_8601_SHAPE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt ][0-9]{2}:[0-9]{2}(?::(?P<second>[0-9]{2})(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_ISO_8601 = re.compile(_ISO_8601_SHAPE)
# The same shape as a JSON Schema pattern, for the OpenAPI document (surrounding
# whitespace is stripped before parsing): it cannot tell a real date or the range.
TIMESTAMP_PATTERN = r"^\s*" + _ISO_8601_SHAPE.replace("?P<second>", "") + r"\s*$"


def parse_timestamp(value: str) -> datetime:
    """Parse ISO 8601; an offset is converted to UTC, no offset means UTC. A leap second
    (``23:59:60`` UTC, or that moment in another offset, ``18:59:60-05:00``) is the last
    microsecond of its minute: a datetime cannot hold it. A second of 60 at any other
    minute is no time at all and is refused."""
    text = value.strip()
    shape = _ISO_8601.fullmatch(text)
    if shape is None:
        raise InvalidTimestamp(
            f"{value!r} is not an ISO 8601 timestamp (e.g. 2025-10-31T19:24:11Z)"
        )
    leap = shape["second"] == "60"
    if leap:
        start, end = shape.span("second")
        text = text[:start] + "59" + text[end:]
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace(",", ".", 1))
        if leap:
            parsed = parsed.replace(microsecond=999_999)
        moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise InvalidTimestamp(f"{value!r} is not a valid date and time") from None
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00, past the last datetime in UTC
        moment = LATEST
    if not EARLIEST <= moment < LATEST:
        raise InvalidTimestamp(
            f"{value!r} is outside the supported range, {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}"
        )
    if leap and (moment.hour, moment.minute) != (23, 59):
        # Leap seconds are inserted only at the end of a UTC day: 10:15:60 is a typo or a
        # clock's bug, and reading it as 10:15:59 would file the event a second off.
        raise InvalidTimestamp(
            f"{value!r} is not a valid date and time: a second of 60 (a leap second) "
            "falls only at 23:59:60 UTC"
        )
    return moment


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (the storage form of every timestamp)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


# Remembered for the last few thousand moments: ingestion writes each event's time twice
# (its fingerprint, then what its rules see), a batch's events apart, and writing one
# costs about 12,800 instructions (10,500 of them in ``isoformat``). Equal moments are
# one instant, whose UTC text is the same whatever zone either was given in.
@lru_cache(maxsize=4096)
def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a trailing Z, as the API returns it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def next_utc_midnight(moment: datetime) -> datetime:
    """The first UTC midnight at or after ``moment``."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == moment else day + timedelta(days=1)


def utc_day(moment: datetime) -> str:
    """The calendar day (UTC) of a moment, e.g. ``2025-11-03``."""
    # The date that starts its ISO text (a year is written in four digits), which ``iso``
    # has remembered for an event being ingested: working it out again cost a daily
    # limit's dedup key about 3,000 instructions.
    return iso(moment)[:10]


def readable_span(delta: timedelta) -> str:
    """``delta`` in the unit a reader takes in at once: ``90 seconds``, ``5 minutes``,
    ``26 hours``, ``26,689 days``."""
    seconds = delta.total_seconds()
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size):,} {unit}s"
    whole = int(seconds)
    return f"{whole} second{'' if whole == 1 else 's'}"
