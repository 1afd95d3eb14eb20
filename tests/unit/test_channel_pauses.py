"""A receiver's Retry-After pauses its channel: said once per pause in the log."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from herald.delivery.provider import DeliveryResult
from herald.delivery.ratelimit import ChannelRateLimits
from herald.delivery.send_gates import SendGates
from tests.conftest import FixedClock


def gates(clock: FixedClock) -> SendGates:
    return SendGates(
        clock=clock,
        hold=None,
        hold_channels=frozenset(),
        rate_limits=ChannelRateLimits(),
        longest_pause_s=600,
    )


def pause_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "paused for" in r.getMessage()]


def test_a_round_of_429s_pauses_its_channel_with_one_log_line(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A round's sends are under way together: the receiver answers each 429 with the same
    Retry-After, a few milliseconds apart. Each answer logged the pause again, 22 WARNING
    lines for one 3 s pause."""
    caplog.set_level(logging.WARNING, "herald.delivery")
    send_gates = gates(clock)
    throttled = DeliveryResult.retry("HTTP 429: slow down (Retry-After: 3)", after=3.0)
    for _ in range(22):
        send_gates.pause_if_asked("email", throttled)
        clock.now += timedelta(milliseconds=5)

    assert pause_lines(caplog) == [
        "email paused for 3.0 s in this dispatcher: its receiver answered "
        "HTTP 429: slow down (Retry-After: 3)"
    ]


def test_a_pause_made_longer_or_begun_again_is_said_again(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "herald.delivery")
    send_gates = gates(clock)
    send_gates.pause_if_asked("email", DeliveryResult.retry("HTTP 429", after=3.0))
    send_gates.pause_if_asked("sms", DeliveryResult.retry("HTTP 503", after=3.0))
    send_gates.pause_if_asked("email", DeliveryResult.retry("HTTP 503", after=60.0))
    clock.now += timedelta(seconds=61)
    send_gates.pause_if_asked("email", DeliveryResult.retry("HTTP 429", after=3.0))

    assert [line.split(" in this")[0] for line in pause_lines(caplog)] == [
        "email paused for 3.0 s",
        "sms paused for 3.0 s",
        "email paused for 60.0 s",
        "email paused for 3.0 s",
    ]
