"""Time in Herald is UTC, carried as aware datetimes and stored as integer microseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidTimestamp(ValueError):
    pass


def parse_timestamp(value: str) -> datetime:
    """Parse ISO 8601; an offset is converted to UTC, no offset means UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidTimestamp(f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (the storage form of every timestamp)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a trailing Z, as the API returns it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc_day(moment: datetime) -> str:
    """The calendar day (UTC) of a moment, e.g. ``2025-11-03``."""
    return moment.astimezone(UTC).date().isoformat()
