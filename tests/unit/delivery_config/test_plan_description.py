"""What a delivery plan says of itself: where each channel sends and never a secret, and its
retries, rate limits and quiet hours."""

from __future__ import annotations

from tests.support.delivery_config import FULL, build


def test_the_plan_says_where_each_channel_sends_and_never_a_secret() -> None:
    document = {
        **FULL,
        "providers": {
            **FULL["providers"],
            "sms": {"type": "webhook", "url": "https://user:pw@sms.example.com:8443/send?t=tok"},
        },
    }

    described = build(document).channels_described()

    assert described == [
        "email: smtp, smtp.example.com:587 (starttls)",
        "sms: webhook, https://sms.example.com:8443",
        "internal: log+webhook, WARNING lines in the log and https://chat.example.com",
    ]


def test_the_plan_names_the_provider_an_alert_s_webhook_is_added_to() -> None:
    # It said "internal: log+webhook, outbox.jsonl and ..." of alerts the stub recorded.
    internal = {"type": "stub", "webhook": {"url": "https://chat.example.com/hooks/risk"}}

    plan = build({"providers": {"internal": internal}})

    assert plan.channels_described()[2] == (
        "internal: stub+webhook, outbox.jsonl and https://chat.example.com"
    )


def test_the_plan_says_its_retries_rate_limits_and_quiet_hours() -> None:
    assert build(FULL).policy_described() == [
        "retries: 5 attempts at most, the second after 2 s, each wait x2, at most 600 s; "
        "then a dead letter",
        "rate limits: sms 10/s, per delivering process",
        "quiet hours: sms 21:00-08:00, in each user's timezone (else UTC)",
    ]
    assert build({}).channels_described() == [
        "email: stub, outbox.jsonl",
        "sms: stub, outbox.jsonl",
        "internal: log, WARNING lines in the log",
    ]
    assert len(build({}).policy_described()) == 1  # no rate limit, no quiet hours


def test_the_plan_says_quiet_hours_whose_start_is_their_end_hold_nothing_back() -> None:
    # `herald rules check` listed "quiet hours: email 08:00-08:00", which reads as quiet all
    # day; a window whose start is its end is none at all (the README says so).
    window = {"start": "08:00", "end": "08:00"}
    document = {"delivery": {"quiet_hours": {"email": window}}}

    [_retries, quiet] = build(document).policy_described()

    assert quiet == (
        "quiet hours: email none (08:00-08:00: the start is the end), in each user's "
        "timezone (else UTC)"
    )


def test_a_plan_whose_first_wait_is_above_the_ceiling_says_the_wait_it_keeps() -> None:
    # It said "the second after 100 s, each wait x2, at most 10 s": every wait is 10 s.
    delivery = {"backoff_seconds": 100, "max_backoff_seconds": 10}

    [retries] = build({"delivery": delivery}).policy_described()

    assert retries == (
        "retries: 5 attempts at most, each 10 s after the one before (backoff_seconds 100 "
        "is above max_backoff_seconds 10); then a dead letter"
    )


def test_the_plan_shows_the_seconds_a_quiet_hours_bound_keeps() -> None:
    # "21:00:30" was listed as 21:00, while a message due at 21:00:10 is not held.
    window = {"start": "21:00:30", "end": "08:00"}

    [_retries, quiet] = build({"delivery": {"quiet_hours": {"sms": window}}}).policy_described()

    assert quiet == "quiet hours: sms 21:00:30-08:00, in each user's timezone (else UTC)"


def test_a_plan_with_one_attempt_says_it_retries_nothing() -> None:
    """It said "1 attempts at most, the second after 2 s", of a second that never comes."""
    described = build({"delivery": {"max_attempts": 1}}).policy_described()

    assert described == ["retries: none, one attempt; then a dead letter"]
