"""The history an event is decided on: how many earlier triggers an anchor decides,
events older than the pruned history, and several rules anchored on one event type."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from herald.domain.model import Outcome, UserProfile
from herald.domain.timeutil import to_micros
from herald.rules import engine
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset
from tests.support.engine_replay import (
    DECIDED_AT,
    SIGNUP_AT,
    TRAITS,
    USER,
    at,
    event,
    of_rule,
    payment_failed,
    replay,
)


def test_an_anchor_decides_at_most_the_earliest_hundred_earlier_triggers(
    ruleset: RuleSet,
) -> None:
    signup_at = at(SIGNUP_AT)
    links = [
        event("link_bank_success", signup_at + timedelta(minutes=n), event_id=f"link-{n:03d}")
        for n in range(engine.MAX_TRIGGERS_PER_ANCHOR + 5)
    ]
    signup = event("signup_completed", signup_at)

    decisions = of_rule(replay([*links, signup], ruleset)[len(links) :], "BANK_LINK_NUDGE_SMS")

    assert len(decisions) == engine.MAX_TRIGGERS_PER_ANCHOR + 1
    assert decisions[0].outcome is Outcome.TRIGGERED and "link-000" in decisions[0].reason
    assert {d.outcome for d in decisions[1:-1]} == {Outcome.SUPPRESSED}
    assert decisions[-1].outcome is Outcome.SKIPPED
    assert "were not decided: an event decides at most the earliest 100" in decisions[-1].reason


# Pruned history: what cannot be checked is not sent


def test_an_event_older_than_the_pruned_history_is_skipped_by_every_rule_saying_why(
    ruleset: RuleSet,
) -> None:
    """The message that held its day's limit may have been pruned with the history."""
    user = UserProfile(
        USER, TRAITS, {}, pruned_before_us=to_micros(at("2025-11-02T00:00:00+00:00"))
    )
    late = payment_failed("2025-11-01T21:00:00+00:00", attempt=3)

    decisions = engine.evaluate(late, user, [], ruleset, DECIDED_AT)

    assert [(d.rule, d.outcome) for d in decisions] == [
        ("INSUFFICIENT_FUNDS_EMAIL", Outcome.SKIPPED),
        ("HIGH_RISK_ALERT", Outcome.SKIPPED),
    ]
    assert decisions[0].reason == (
        "the user's history before 2025-11-02T00:00:00Z was deleted (pruned), and this "
        "payment_failed at 2025-11-01T21:00:00Z is older: its limits "
        "cannot be checked, and its properties and traits are not kept"
    )


def test_an_event_since_the_pruned_history_is_decided_as_usual(ruleset: RuleSet) -> None:
    user = UserProfile(
        USER, TRAITS, {}, pruned_before_us=to_micros(at("2025-11-02T00:00:00+00:00"))
    )

    decisions = engine.evaluate(
        payment_failed("2025-11-02T00:00:00+00:00"), user, [], ruleset, DECIDED_AT
    )

    assert decisions[0].outcome is Outcome.TRIGGERED


# Several rules anchored on one event type


TWO_NUDGES = """
events:
  signup_completed: {}
  link_bank_success: {}
rules:
  - id: NUDGE_DAY
    trigger: link_bank_success
    after: {event: signup_completed, within: 24h}
    channel: internal
  - id: NUDGE_WEEK
    trigger: link_bank_success
    after: {event: signup_completed, within: 7d}
    channel: internal
"""


@pytest.fixture
def two_nudges(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(TWO_NUDGES, encoding="utf-8")
    return load_ruleset(path)


@pytest.mark.parametrize("links", [1, 60])
def test_each_rule_anchored_on_a_signup_decides_each_earlier_link_once(
    links: int, two_nudges: RuleSet
) -> None:
    signup = event("signup_completed", SIGNUP_AT)
    early = [
        event("link_bank_success", signup.timestamp + timedelta(minutes=minute))
        for minute in range(links)
    ]

    decisions = replay([*early, signup], two_nudges)[2 * links :]  # those of the signup

    for rule in ("NUDGE_DAY", "NUDGE_WEEK"):
        assert [d.outcome for d in of_rule(decisions, rule)] == [Outcome.TRIGGERED] * links
