import functools
from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from herald.delivery.quiet_hours import QuietHours, hold_policy, resolve_zone

NIGHT = QuietHours(start=time(21, 0), end=time(8, 0))  # wraps midnight
LUNCH = QuietHours(start=time(13, 0), end=time(14, 0))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_outside_the_window_a_message_may_go_now() -> None:
    assert NIGHT.release_time(utc(2024, 1, 10, 12, 0), None) is None


def test_late_evening_is_released_the_next_morning() -> None:
    assert NIGHT.release_time(utc(2024, 1, 10, 22, 30), None) == utc(2024, 1, 11, 8, 0)


def test_early_morning_is_released_the_same_morning() -> None:
    assert NIGHT.release_time(utc(2024, 1, 11, 3, 0), None) == utc(2024, 1, 11, 8, 0)


def test_the_start_of_the_window_is_already_quiet() -> None:
    assert NIGHT.release_time(utc(2024, 1, 10, 21, 0), None) == utc(2024, 1, 11, 8, 0)
    assert NIGHT.release_time(utc(2024, 1, 10, 20, 59, 59), None) is None


def test_the_end_of_the_window_is_no_longer_quiet() -> None:
    assert NIGHT.release_time(utc(2024, 1, 11, 8, 0), None) is None
    just_before = utc(2024, 1, 11, 8, 0) - timedelta(microseconds=1)
    assert NIGHT.release_time(just_before, None) == utc(2024, 1, 11, 8, 0)


def test_a_window_within_one_day_ends_the_same_day() -> None:
    assert LUNCH.release_time(utc(2024, 1, 10, 12, 59), None) is None
    assert LUNCH.release_time(utc(2024, 1, 10, 13, 0), None) == utc(2024, 1, 10, 14, 0)
    assert LUNCH.release_time(utc(2024, 1, 10, 13, 30), None) == utc(2024, 1, 10, 14, 0)
    assert LUNCH.release_time(utc(2024, 1, 10, 14, 0), None) is None


def test_equal_start_and_end_means_never_quiet() -> None:
    off = QuietHours(start=time(8, 0), end=time(8, 0))

    assert off.release_time(utc(2024, 1, 10, 8, 0), None) is None
    assert off.release_time(utc(2024, 1, 10, 3, 0), None) is None


def test_the_same_instant_is_quiet_in_lisbon_but_not_in_new_york() -> None:
    now = utc(2024, 1, 15, 23, 0)  # 23:00 in Lisbon (UTC+0), 18:00 in New York (UTC-5)

    assert NIGHT.release_time(now, "Europe/Lisbon") == utc(2024, 1, 16, 8, 0)
    assert NIGHT.release_time(now, "America/New_York") is None


def test_a_summer_morning_is_over_in_lisbon_but_still_quiet_in_new_york() -> None:
    now = utc(2024, 7, 15, 7, 30)  # 08:30 in Lisbon (UTC+1), 03:30 in New York (UTC-4)

    assert NIGHT.release_time(now, "Europe/Lisbon") is None
    assert NIGHT.release_time(now, "America/New_York") == utc(2024, 7, 15, 12, 0)


def test_a_night_when_clocks_go_forward_ends_at_local_eight_in_summer_time() -> None:
    # New York, 2024-03-10: 02:00 EST becomes 03:00 EDT during the night.
    evening = utc(2024, 3, 10, 3, 0)  # 22:00 EST on the 9th

    assert NIGHT.release_time(evening, "America/New_York") == utc(2024, 3, 10, 12, 0)


def test_a_night_when_clocks_go_back_ends_at_local_eight_in_winter_time() -> None:
    # New York, 2024-11-03: 02:00 EDT becomes 01:00 EST during the night.
    evening = utc(2024, 11, 3, 1, 0)  # 21:00 EDT on the 2nd

    assert NIGHT.release_time(evening, "America/New_York") == utc(2024, 11, 3, 13, 0)


def test_an_end_in_the_skipped_hour_releases_when_the_clocks_jump() -> None:
    # Lisbon, 2024-03-31: at 01:00 UTC the clocks jump from 01:00 to 02:00, so
    # 01:30 local never happens.
    window = QuietHours(start=time(23, 0), end=time(1, 30))

    release = window.release_time(utc(2024, 3, 30, 23, 30), "Europe/Lisbon")

    assert release == utc(2024, 3, 31, 1, 0)


def test_an_end_that_happens_twice_releases_at_its_next_occurrence() -> None:
    # New York, 2024-11-03: local 01:00-02:00 happens first in EDT, then in EST.
    window = QuietHours(start=time(23, 0), end=time(1, 30))

    first_pass = window.release_time(utc(2024, 11, 3, 5, 15), "America/New_York")  # 01:15 EDT
    second_pass = window.release_time(utc(2024, 11, 3, 6, 15), "America/New_York")  # 01:15 EST

    assert first_pass == utc(2024, 11, 3, 5, 30)
    assert second_pass == utc(2024, 11, 3, 6, 30)


@pytest.mark.parametrize(
    "zone", [None, "", "Mars/Olympus_Mons", "../etc/passwd", "+05:00", "localtime", "LOCALTIME"]
)
def test_an_absent_or_unknown_zone_counts_as_utc(zone: str | None) -> None:
    assert NIGHT.release_time(utc(2024, 1, 10, 22, 0), zone) == utc(2024, 1, 11, 8, 0)
    assert NIGHT.release_time(utc(2024, 1, 10, 12, 0), zone) is None
    assert resolve_zone(zone) is UTC


def test_a_zone_is_found_whatever_the_case_of_its_name() -> None:
    assert str(resolve_zone("asia/tokyo")) == "Asia/Tokyo"
    assert str(resolve_zone("EUROPE/LISBON")) == "Europe/Lisbon"


def test_a_hold_names_the_zone_it_used_and_says_when_it_fell_back_to_utc() -> None:
    hold = hold_policy({"sms": QuietHours(time(0, 0), time(23, 59))})
    now = utc(2024, 1, 10, 12, 0)

    tokyo = hold("sms", {"timezone": "asia/tokyo"}, now)
    unknown = hold("sms", {"timezone": "Not/AZone"}, now)

    assert tokyo is not None and unknown is not None
    assert tokyo == (utc(2024, 1, 10, 14, 59), tokyo[1])
    assert "(00:00-23:59 Asia/Tokyo)" in tokyo[1]
    assert unknown[0] == utc(2024, 1, 10, 23, 59)
    assert "(00:00-23:59 UTC, as the user's timezone 'Not/AZone' is not a known zone)" in unknown[1]


def test_a_hold_says_it_fell_back_to_utc_for_a_timezone_that_is_no_text() -> None:
    # It said "(00:00-23:59 UTC)" as for a user with no timezone, hiding the client's error.
    hold = hold_policy({"sms": QuietHours(time(0, 0), time(23, 59))})

    held = hold("sms", {"timezone": 5}, utc(2024, 1, 10, 12, 0))

    assert held is not None
    assert "(00:00-23:59 UTC, as the user's timezone is a number, not a zone's name)" in held[1]


def test_the_release_time_is_in_utc_whatever_zone_now_is_given_in() -> None:
    now = datetime(2024, 1, 10, 23, 0, tzinfo=timezone(timedelta(hours=1)))  # 22:00 UTC

    release = NIGHT.release_time(now, None)

    assert release == utc(2024, 1, 11, 8, 0)
    assert release is not None and release.tzinfo is UTC


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        NIGHT.release_time(datetime(2024, 1, 10, 22, 0), None)


def test_quiet_hours_are_wall_clock_times_without_a_zone() -> None:
    with pytest.raises(ValueError):
        QuietHours(start=time(21, 0, tzinfo=UTC), end=time(8, 0))


ZONES = [
    "UTC",
    "Europe/Lisbon",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # half-hour daylight-saving shifts
    "Pacific/Apia",  # skipped 2011-12-30 entirely
]


FIRST, LAST = datetime(2005, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC)


@functools.cache
def offset_changes(zone: str) -> list[datetime]:
    """The instants (UTC, to the second) where ``zone``'s clocks jump, FIRST to LAST."""
    tz, changes, day = ZoneInfo(zone), [], FIRST
    while day < LAST:
        before, after = day, day + timedelta(days=1)
        if before.astimezone(tz).utcoffset() != after.astimezone(tz).utcoffset():
            while after - before > timedelta(seconds=1):
                middle = before + (after - before) / 2
                same = middle.astimezone(tz).utcoffset() == before.astimezone(tz).utcoffset()
                before, after = (middle, after) if same else (before, middle)
            changes.append(after.replace(microsecond=0))
        day += timedelta(days=1)
    return changes


@st.composite
def moments_in_zones(draw: st.DrawFn) -> tuple[datetime, str]:
    """A zone and an instant, as often as not within an hour of one of the zone's clock
    changes or two days before it: where a window's end may fall in a skipped or
    repeated hour. Drawn uniformly, an instant is that close to a change about once in a
    hundred examples."""
    zone = draw(st.sampled_from(ZONES))
    changes = offset_changes(zone)
    if not changes or draw(st.booleans()):
        return draw(st.datetimes(FIRST.replace(tzinfo=None), LAST.replace(tzinfo=None))).replace(
            tzinfo=UTC
        ), zone
    change = draw(st.sampled_from(changes))
    hour = 3_600_000_000
    before = draw(st.integers(-hour, hour) | st.integers(-hour, 49 * hour))  # in microseconds
    return change - timedelta(microseconds=before), zone


# Window edges on the hours clocks jump at (a microsecond either side), or any time.
JUMP_HOURS = [time(0), time(1), time(1, 0, 0, 1), time(1, 59, 59, 999_999), time(2)]
JUMP_HOURS += [time(2, 0, 0, 1), time(2, 30), time(3), time(23, 59, 59, 999_999)]
EDGES = st.sampled_from(JUMP_HOURS) | st.times()


@example(
    moment=(utc(2005, 3, 26, 15, 0), "Australia/Lord_Howe"),
    start=time(0),
    end=time(1, 59, 59, 999_999),
).via("Lord Howe's clocks go back half an hour at 02:00: the window's end is met twice")
@settings(max_examples=400)  # a fraction of a second each hundred
@given(moment=moments_in_zones(), start=EDGES, end=EDGES)
def test_a_message_is_held_exactly_while_the_window_is_on_and_released_as_it_ends(
    moment: tuple[datetime, str], start: time, end: time
) -> None:
    now, zone = moment
    window = QuietHours(start=start, end=end)
    wall = now.astimezone(ZoneInfo(zone)).time()
    quiet = start <= wall < end if start <= end else (wall >= start or wall < end)

    release = window.release_time(now, zone)

    assert (release is not None) == quiet  # held exactly while the user's clock is inside
    if release is not None:
        assert now < release <= now + timedelta(hours=49)
        assert window.release_time(release, zone) is None
        assert window.release_time(release - timedelta(microseconds=1), zone) is not None


def test_a_night_whose_next_day_is_skipped_ends_on_the_morning_after() -> None:
    # Pacific/Apia jumped from 2011-12-29 23:59:59 (UTC-10) to 2011-12-31 00:00
    # (UTC+14): the night of the 29th runs straight into the night of the 31st.
    evening = utc(2011, 12, 30, 8, 0)  # 22:00 on the 29th in Apia

    assert NIGHT.release_time(evening, "Pacific/Apia") == utc(2011, 12, 30, 18, 0)


def test_an_end_with_a_fraction_of_a_second_in_the_skipped_hour_releases_at_the_jump() -> None:
    # Found by the property test above: New York, 2012-03-11, 02:00 EST became 03:00 EDT,
    # so 02:00:00.000001 never happened; the window is over at the jump, 07:00:00 UTC.
    window = QuietHours(start=time(3, 0, 1), end=time(2, 0, 0, 1))

    release = window.release_time(utc(2012, 3, 10, 8, 0, 1), "America/New_York")

    assert release == utc(2012, 3, 11, 7, 0)
    assert window.release_time(release - timedelta(microseconds=1), "America/New_York")
