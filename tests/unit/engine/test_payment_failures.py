"""INSUFFICIENT_FUNDS_EMAIL and HIGH_RISK_ALERT, the default rules on a failed payment:
who they message, and their limit of once per user per UTC day."""

from __future__ import annotations

import pytest

from herald.domain.model import Outcome
from herald.rules.definition import RuleSet
from tests.support.engine_replay import USER, event, of_rule, payment_failed, replay, the_one

DAILY_RULES = pytest.mark.parametrize("rule", ["INSUFFICIENT_FUNDS_EMAIL", "HIGH_RISK_ALERT"])


def test_a_payment_failed_for_insufficient_funds_emails_the_user(ruleset: RuleSet) -> None:
    decision = the_one(
        replay([payment_failed("2025-11-02T09:00:00+00:00")], ruleset), "INSUFFICIENT_FUNDS_EMAIL"
    )

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.draft is not None
    assert decision.draft.recipient == "maria@example.com"
    assert decision.dedup_key == f"INSUFFICIENT_FUNDS_EMAIL:{USER}:2025-11-02"


def test_a_payment_failed_for_another_reason_is_skipped_naming_the_reason(
    ruleset: RuleSet,
) -> None:
    failed = payment_failed("2025-11-02T09:00:00+00:00", reason="CARD_EXPIRED")

    decision = the_one(replay([failed], ruleset), "INSUFFICIENT_FUNDS_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    assert 'failure_reason is "CARD_EXPIRED"' in decision.reason


@DAILY_RULES
def test_a_second_failure_on_the_same_utc_day_is_suppressed_naming_the_holder(
    rule: str, ruleset: RuleSet
) -> None:
    morning = payment_failed("2025-11-02T00:00:00+00:00", attempt=3)
    night = payment_failed("2025-11-02T23:59:59+00:00", attempt=4)

    first, second = of_rule(replay([morning, night], ruleset), rule)

    assert first.outcome is Outcome.TRIGGERED
    assert second.outcome is Outcome.SUPPRESSED
    assert second.draft is None
    key = f"{rule}:{USER}:2025-11-02"
    assert second.dedup_key == key
    assert f"once_per_user_per_day: dedup key {key} is held by message {first.message_id}" in (
        second.reason
    )


@DAILY_RULES
def test_failures_a_second_either_side_of_utc_midnight_fall_on_different_days(
    rule: str, ruleset: RuleSet
) -> None:
    before = payment_failed("2025-11-02T23:59:59+00:00", attempt=3)
    after = payment_failed("2025-11-03T00:00:01+00:00", attempt=3)

    decisions = of_rule(replay([before, after], ruleset), rule)

    assert [d.outcome for d in decisions] == [Outcome.TRIGGERED, Outcome.TRIGGERED]
    assert [d.dedup_key for d in decisions] == [
        f"{rule}:{USER}:2025-11-02",
        f"{rule}:{USER}:2025-11-03",
    ]


@DAILY_RULES
@pytest.mark.parametrize(
    ("local_time", "utc_day"),
    [
        ("2025-11-03T01:30:00+02:00", "2025-11-02"),
        ("2025-11-02T22:30:00-05:00", "2025-11-03"),
        ("2025-11-02T23:59:59+00:00", "2025-11-02"),
    ],
)
def test_the_daily_limit_counts_the_utc_day_not_the_local_one(
    rule: str, local_time: str, utc_day: str, ruleset: RuleSet
) -> None:
    decision = the_one(replay([payment_failed(local_time, attempt=3)], ruleset), rule)

    assert decision.dedup_key == f"{rule}:{USER}:{utc_day}"


def test_a_failure_at_1_30_local_time_shares_the_limit_of_the_previous_utc_day(
    ruleset: RuleSet,
) -> None:
    evening_utc = payment_failed("2025-11-02T20:00:00+00:00")
    next_morning_local = payment_failed("2025-11-03T01:30:00+02:00")

    _, second = of_rule(
        replay([evening_utc, next_morning_local], ruleset), "INSUFFICIENT_FUNDS_EMAIL"
    )

    assert second.outcome is Outcome.SUPPRESSED


@pytest.mark.parametrize(
    ("attempt", "outcome"), [(2, Outcome.SKIPPED), (3, Outcome.TRIGGERED), (7, Outcome.TRIGGERED)]
)
def test_the_risk_team_is_alerted_from_the_third_failed_attempt(
    attempt: int, outcome: Outcome, ruleset: RuleSet
) -> None:
    failed = payment_failed("2025-11-02T09:00:00+00:00", attempt=attempt, reason="DECLINED")

    decision = the_one(replay([failed], ruleset), "HIGH_RISK_ALERT")

    assert decision.outcome is outcome
    assert f"attempt_number is {attempt}" in decision.reason


def test_a_triggered_alert_names_no_provider_the_engine_cannot_know(ruleset: RuleSet) -> None:
    # It said "internal alert (log)" whatever the rule file's provider: a webhook, a stub.
    failed = payment_failed("2025-11-02T09:00:00+00:00", attempt=3, reason="DECLINED")

    decision = the_one(replay([failed], ruleset), "HIGH_RISK_ALERT")

    assert decision.reason == (
        "`event.properties.attempt_number >= 3` is true (event.properties.attempt_number is 3);"
        " internal alert to the team"
    )


def test_the_risk_alert_goes_to_the_team_even_when_the_user_has_no_address(
    ruleset: RuleSet,
) -> None:
    failed = event(
        "payment_failed",
        "2025-11-02T09:00:00+00:00",
        properties={"amount": 1.0, "attempt_number": 3, "failure_reason": "DECLINED"},
        traits={},
    )

    decision = the_one(replay([failed], ruleset), "HIGH_RISK_ALERT")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.draft is not None
    assert (decision.draft.channel, decision.draft.recipient) == ("internal", "internal")
