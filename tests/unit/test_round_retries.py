"""A round's retries said a line per channel and error, however varied their errors."""

from __future__ import annotations

import logging

import pytest

from herald.delivery.round_retries import RoundRetries
from herald.domain.recipients import INTERNAL_RECIPIENT
from herald.domain.timeutil import to_micros
from herald.store.outbox import ClaimedMessage
from tests.conftest import FixedClock

NOW_US = to_micros(FixedClock()())


def claimed(number: int, channel: str = "sms", recipient: str | None = None) -> ClaimedMessage:
    return ClaimedMessage(
        message_id=f"msg_{number}",
        dedup_key=f"key{number}",
        user_id=f"u{number}",
        event_id=f"e{number}",
        rule="RULE",
        rule_version="v1",
        channel=channel,
        category="transactional",
        recipient=recipient or f"+3519100000{number:02d}",
        subject="",
        body="hello",
        html=None,
        status="sending",
        created_us=NOW_US,
        due_us=NOW_US,
        sent_us=None,
        attempts=0,
        last_error=None,
        hold_reason=None,
        claimed_by="w1",
        lease_until_us=NOW_US + 60_000_000,
        cancel_requested=None,
    )


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_a_channel_s_errors_beyond_the_most_frequent_share_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A gateway quoting a reference of its own in each refusal: without a bound, a line
    per message again."""
    caplog.set_level(logging.INFO, "herald.delivery")
    retries = RoundRetries(NOW_US)
    errors = ["HTTP 503"] * 3 + ["HTTP 502"] * 2 + ["timeout after 10 s"]
    errors += [f"HTTP 500: trace {n}" for n in range(4)]
    for number, error in enumerate(errors):
        # Jittered backoffs: the round's messages go again over a few seconds.
        retries.add(claimed(number), error, NOW_US + 8_000_000 + number * 300_000)
    retries.add(claimed(99, channel="email", recipient="ana@example.com"), "HTTP 503", NOW_US)
    retries.say()

    assert said(caplog) == [
        "email: 1 message(s) will be retried: HTTP 503; next attempt now",
        "sms: 3 message(s) will be retried: HTTP 503; next attempts due in 8.0 to 8.6 s, "
        "at 2025-11-03T12:00:08Z",
        "sms: 2 message(s) will be retried: HTTP 502; next attempts due in 8.9 to 9.2 s, "
        "from 2025-11-03T12:00:08Z to 2025-11-03T12:00:09Z",
        "sms: 1 message(s) will be retried: timeout after 10 s; next attempt due in 9.5 s, "
        "at 2025-11-03T12:00:09Z",
        "sms: 4 message(s) will be retried: 4 other error(s), each message's at DEBUG, such "
        "as HTTP 500: trace 0; next attempts due in 9.8 to 11 s, from 2025-11-03T12:00:09Z "
        "to 2025-11-03T12:00:10Z",
    ]
    caplog.clear()
    retries.say()  # said once
    assert said(caplog) == []


def test_an_error_quoting_its_message_s_recipient_or_id_is_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "herald.delivery")
    retries = RoundRetries(NOW_US)
    for number in range(3):
        row = claimed(number, channel="email", recipient=f"user{number}@example.com")
        error = f"{row.recipient} refused: SMTP 450: busy (ref {row.message_id})"
        retries.add(row, error, NOW_US + 2_000_000)
    # The internal channel's recipient is a plain word, left alone in its errors.
    for number in range(3, 5):
        retries.add(
            claimed(number, "internal", INTERNAL_RECIPIENT), "HTTP 500: internal error", NOW_US
        )
    retries.say()

    assert said(caplog) == [
        "email: 3 message(s) will be retried: <recipient> refused: SMTP 450: busy (ref "
        "<message id>); next attempt due in 2.0 s, at 2025-11-03T12:00:02Z",
        "internal: 2 message(s) will be retried: HTTP 500: internal error; next attempt now",
    ]
    # As fields too, which a JSON log is searched and counted by.
    fields = vars(caplog.records[0])
    assert (fields["channel"], fields["retried"], fields["next_attempt_from"]) == (
        "email",
        3,
        "2025-11-03T12:00:02Z",
    )
