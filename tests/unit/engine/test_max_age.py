"""A rule's `max_age`: a trigger older than it when decided is skipped, saying how old,
as a message about it would come too late; the age counts against the server's clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from herald.domain.model import Event, Outcome
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset
from tests.support.engine_replay import DECIDED_AT, TRAITS, at, event, of_rule, replay, the_one

FRESH_RULES = """
events:
  signup_completed: {}
  link_bank_success: {}
  payment_failed:
    properties:
      failure_reason: {type: string}
traits:
  email: string
  phone: string
  marketing_opt_in: boolean
rules:
  - id: SHORTFALL
    trigger: payment_failed
    channel: email
    category: transactional
    template: shortfall
    max_age: 72h
  - id: NUDGE
    trigger: link_bank_success
    after: {event: signup_completed, within: 24h}
    channel: internal
    max_age: 1d
"""


@pytest.fixture
def fresh_rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "templates" / "shortfall").mkdir(parents=True)
    for part in ("subject.txt", "body.txt"):
        (tmp_path / "templates" / "shortfall" / part).write_text("Top up", encoding="utf-8")
    path = tmp_path / "rules.yaml"
    path.write_text(FRESH_RULES, encoding="utf-8")
    return load_ruleset(path)


def _failed(moment: str) -> Event:
    properties = {"failure_reason": "X"}
    return event("payment_failed", moment, event_id="p1", properties=properties, traits=TRAITS)


def test_a_trigger_older_than_max_age_is_skipped_saying_how_old(fresh_rules: RuleSet) -> None:
    [decision] = replay([_failed("2025-11-06T23:59:59+00:00")], fresh_rules)

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        "payment_failed p1 at 2025-11-06T23:59:59Z is 3 days old, past the rule's max_age "
        "of 72h: a message about it would come too late"
    )


@pytest.mark.parametrize("age", [timedelta(hours=72), timedelta(minutes=1), timedelta(0)])
def test_a_trigger_at_most_max_age_old_is_decided_as_usual(
    fresh_rules: RuleSet, age: timedelta
) -> None:
    moment = (DECIDED_AT - age).isoformat()

    [decision] = replay([_failed(moment)], fresh_rules)

    assert decision.outcome is Outcome.TRIGGERED, decision.reason


def test_an_old_trigger_decided_by_its_late_anchor_is_skipped_too(fresh_rules: RuleSet) -> None:
    """A bank link of last week, whose signup arrives only now, decides the nudge now: a
    week late, it is not sent."""
    link = event("link_bank_success", "2025-11-03T09:00:00+00:00", traits=TRAITS)
    signup = event("signup_completed", "2025-11-03T08:00:00+00:00", traits=TRAITS)

    decisions = of_rule(replay([link, signup], fresh_rules), "NUDGE")

    assert [d.outcome for d in decisions] == [Outcome.SKIPPED, Outcome.SKIPPED]
    assert decisions[1].reason.startswith(f"link_bank_success {link.event_id} at 2025-11-03T09")
    assert "is 6 days old, past the rule's max_age of 1d" in decisions[1].reason


def test_the_age_counts_from_when_it_is_decided(fresh_rules: RuleSet) -> None:
    failed = _failed("2025-11-03T12:00:00+00:00")

    soon = the_one(replay([failed], fresh_rules, now=at("2025-11-04T12:00:00+00:00")), "SHORTFALL")
    late = the_one(replay([failed], fresh_rules, now=at("2025-11-07T12:00:01+00:00")), "SHORTFALL")

    assert (soon.outcome, late.outcome) == (Outcome.TRIGGERED, Outcome.SKIPPED)
