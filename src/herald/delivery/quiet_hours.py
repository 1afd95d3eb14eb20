"""Quiet hours: a daily window, in the user's own time zone, when nothing is sent.

A message that falls inside the window is held back until the window ends
rather than dropped. Pure: the current time is always an argument.

``hold_policy`` is how ingestion (for a new message) and the dispatcher (for a retry
or a backlog reaching the window) ask the same question.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from herald.domain.properties import json_kind
from herald.domain.timeutil import iso


@dataclass(frozen=True, slots=True)
class QuietHours:
    """The daily window ``[start, end)`` in local wall-clock time.

    ``start`` is inside the window, ``end`` is not. When ``start > end`` the
    window wraps midnight: 21:00-08:00 is quiet from 21:00 in the evening until
    08:00 the next morning. ``start == end`` is an empty window (never quiet),
    which is how a user switches quiet hours off without losing the setting.

    Both are naive ``datetime.time`` values: the zone is the user's, given to
    ``release_time``.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are wall-clock times: start and end must be naive")

    def release_time(self, now_utc: datetime, timezone: str | None) -> datetime | None:
        """When a message held back at ``now_utc`` may go out, or None if it may go now.

        Args:
            now_utc: the current instant; must be timezone-aware (any zone).
            timezone: the user's IANA zone name, e.g. ``"Europe/Lisbon"``. An
                absent, empty or unknown name means UTC, so a bad profile value
                still gets quiet hours instead of an error.

        Returns:
            None when the user's local time is outside the window; otherwise
            the aware UTC datetime at which the window ends: the first instant
            after ``now_utc`` at which the local clock reads ``end`` or later.
            On a day when ``end`` falls into a daylight-saving gap that is the
            moment the clocks jump; when ``end`` occurs twice, its next
            occurrence. At the returned instant the user is never in quiet
            hours, so ``release_time(result, timezone)`` is None.
        """
        if now_utc.tzinfo is None or now_utc.utcoffset() is None:
            raise ValueError("now_utc must be timezone-aware")
        zone = resolve_zone(timezone)
        release = self._window_end(now_utc, zone)
        if release is None:
            return None
        # Where a zone skips a whole day (Pacific/Apia, 2011-12-30) the clocks
        # can jump from one night's window straight into the next one's.
        for _ in range(3):
            later = self._window_end(release, zone)
            if later is None:
                break
            release = later
        return release

    def _window_end(self, instant: datetime, zone: tzinfo) -> datetime | None:
        """The end of the window ``instant`` is in, or None when it is in none."""
        local = instant.astimezone(zone)
        wall = local.time()
        if not self._contains(wall):
            return None
        end_date = local.date()
        if self.start > self.end and wall >= self.start:
            end_date += timedelta(days=1)  # evening part of a window that wraps midnight
        return _first_instant_reading(datetime.combine(end_date, self.end), zone, after=instant)

    def _contains(self, wall: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end


def clock(moment: time) -> str:
    """A quiet hours' bound as written: 21:00, or 21:00:30 when it has seconds, which it
    keeps (shown without them, a message due at 21:00:10 went out in "21:00-08:00")."""
    return f"{moment:%H:%M:%S}" if moment.second or moment.microsecond else f"{moment:%H:%M}"


def resolve_zone(name: str | None) -> tzinfo:
    """The IANA zone called ``name``, in any case; UTC when ``name`` is absent, empty or
    unknown."""
    return zone_named(name)[0]


@functools.lru_cache(maxsize=1024)
def zone_named(name: str | None) -> tuple[tzinfo, str]:
    """The zone ``resolve_zone`` gives ``name``, and what a reason calls it: the zone's
    own name, or UTC saying why (an audit must not claim a zone that was not used)."""
    if not name:
        return UTC, "UTC"
    # Only a name of the zone database: ZoneInfo would also open a file name, or
    # "localtime", the server's own zone. "asia/tokyo" is Asia/Tokyo.
    key = _zone_keys().get(name.casefold())
    try:
        if key is not None:
            return ZoneInfo(key), key
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass  # OSError: odd file systems
    return UTC, f"UTC, as the user's timezone {name!r} is not a known zone"


@functools.cache
def _zone_keys() -> dict[str, str]:
    """Every zone name by its case-folded self; read from the zone database once. Some
    systems list ``localtime`` (a link to the server's own zone) and ``posixrules``
    among them: no user lives there."""
    return {
        key.casefold(): key
        for key in available_timezones()
        if key.casefold() not in ("localtime", "posixrules")
    }


def _first_instant_reading(wall: datetime, zone: tzinfo, *, after: datetime) -> datetime:
    """The first UTC instant after ``after`` at which the clock in ``zone`` reads >= ``wall``.

    ``wall`` is naive. Usually it maps to exactly one instant; around a
    daylight-saving change it may map to two (clocks go back) or none (clocks
    go forward), which is what the ``fold`` juggling below is about.
    """
    candidates = sorted({wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)})
    real = [c for c in candidates if _reads(c, zone) == wall]
    if real:
        later = [c for c in real if c > after]
        return later[0] if later else real[-1]
    # ``wall`` is skipped: the clock jumps from before it to after it somewhere
    # between the two candidates. Transitions fall on whole seconds, so a
    # bisection over whole seconds finds the jump exactly (bounds carrying the
    # fraction of a second of ``wall`` would end a fraction past it).
    low = candidates[0].replace(microsecond=0)
    high = candidates[-1].replace(microsecond=0) + timedelta(seconds=1)
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
        if _reads(middle, zone) >= wall:
            high = middle
        else:
            low = middle
    return high


def _reads(instant: datetime, zone: tzinfo) -> datetime:
    """What a wall clock in ``zone`` shows at ``instant``, as a naive datetime."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


# (channel, the user's traits, now) -> (when the message may go, why it waits), or None
# when it may go now.
HoldPolicy = Callable[[str, Mapping[str, Any], datetime], tuple[datetime, str] | None]


def no_hold(_channel: str, _user: Mapping[str, Any], _now: datetime) -> None:
    return None


def hold_policy(windows: Mapping[str, QuietHours]) -> HoldPolicy:
    """Quiet hours per channel, in the zone of the user's ``timezone`` trait (UTC when
    it has none, or one that is not a zone)."""

    def hold(channel: str, user: Mapping[str, Any], now: datetime) -> tuple[datetime, str] | None:
        window = windows.get(channel)
        if window is None:
            return None
        said = user.get("timezone")
        name = said if isinstance(said, str) else None
        release = window.release_time(now, name)
        if release is None:
            return None
        zone = zone_named(name)[1]
        if said is not None and name is None:  # a number, a list: the client's slip, said
            zone += f", as the user's timezone is {json_kind(said)}, not a zone's name"
        return release, (
            f"quiet hours for {channel} ({clock(window.start)}-{clock(window.end)} "
            f"{zone}): held until {iso(release)}"
        )

    return hold
