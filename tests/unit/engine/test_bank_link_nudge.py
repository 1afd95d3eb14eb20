"""BANK_LINK_NUDGE_SMS, the default rule that texts a user who links a bank within 24 hours
of signing up: its window, in both arrival orders, and the phone it needs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from herald.domain.model import Decision, Outcome
from herald.rules import engine
from herald.rules.definition import RuleSet
from tests.support.engine_replay import SIGNUP_AT, TRAITS, USER, at, event, of_rule, replay, the_one


def sent(decisions: Sequence[Decision], rule: str) -> list[Decision]:
    return [d for d in of_rule(decisions, rule) if d.outcome is Outcome.TRIGGERED]


ARRIVAL_ORDERS = pytest.mark.parametrize(
    "link_arrives_first", [False, True], ids=["signup_arrives_first", "link_arrives_first"]
)


def nudges_for_link(
    gap: timedelta, ruleset: RuleSet, *, link_arrives_first: bool
) -> list[Decision]:
    signup = event("signup_completed", SIGNUP_AT)
    link = event("link_bank_success", signup.timestamp + gap)
    arrivals = [link, signup] if link_arrives_first else [signup, link]
    return sent(replay(arrivals, ruleset), "BANK_LINK_NUDGE_SMS")


@ARRIVAL_ORDERS
@pytest.mark.parametrize(
    "gap",
    [timedelta(0), timedelta(hours=1), timedelta(hours=24)],
    ids=["same_second", "one_hour_later", "exactly_24h_later"],
)
def test_a_bank_link_within_24_hours_after_signup_sends_one_nudge_sms(
    gap: timedelta, link_arrives_first: bool, ruleset: RuleSet
) -> None:
    nudges = nudges_for_link(gap, ruleset, link_arrives_first=link_arrives_first)

    assert len(nudges) == 1
    assert nudges[0].draft is not None
    assert (nudges[0].draft.channel, nudges[0].draft.recipient) == ("sms", "+351912345678")
    assert nudges[0].dedup_key == f"BANK_LINK_NUDGE_SMS:{USER}"


@pytest.mark.parametrize(("phone", "shown"), [("+351912345678", "***78"), ("123", "***23")])
def test_a_decision_shows_a_hint_of_the_phone_number_never_the_number(
    phone: str, shown: str, ruleset: RuleSet
) -> None:
    traits = {**TRAITS, "phone": phone}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", signup.timestamp + timedelta(hours=1), traits=traits)

    [nudge] = sent(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert nudge.reason.endswith(f"; sms to {shown}")


@ARRIVAL_ORDERS
@pytest.mark.parametrize(
    "gap",
    [timedelta(hours=24, seconds=1), timedelta(days=3), timedelta(seconds=-1)],
    ids=["24h_and_1s_later", "three_days_later", "one_second_before_signup"],
)
def test_a_bank_link_outside_the_24_hours_after_signup_sends_no_nudge(
    gap: timedelta, link_arrives_first: bool, ruleset: RuleSet
) -> None:
    assert nudges_for_link(gap, ruleset, link_arrives_first=link_arrives_first) == []


def test_a_link_24_hours_and_1_second_after_signup_is_skipped_naming_the_missing_signup(
    ruleset: RuleSet,
) -> None:
    signup = event("signup_completed", SIGNUP_AT)
    link = event("link_bank_success", signup.timestamp + timedelta(hours=24, seconds=1))

    decision = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert decision.outcome is Outcome.SKIPPED
    assert "no signup_completed within 24h" in decision.reason


def test_a_link_that_arrives_before_its_signup_is_decided_when_the_signup_arrives(
    ruleset: RuleSet,
) -> None:
    link = event("link_bank_success", "2025-11-02T12:00:00+00:00", event_id="evt_link")
    signup = event("signup_completed", SIGNUP_AT, event_id="evt_signup")

    link_decisions = replay([link], ruleset)
    all_decisions = replay([link, signup], ruleset)

    waiting = the_one(link_decisions, "BANK_LINK_NUDGE_SMS")
    assert waiting.outcome is Outcome.SKIPPED
    assert "later-arriving" in waiting.reason
    skipped, nudge = of_rule(all_decisions, "BANK_LINK_NUDGE_SMS")
    assert skipped == waiting
    assert nudge.outcome is Outcome.TRIGGERED
    assert nudge.draft is not None
    assert nudge.draft.trigger.event_id == "evt_link"
    assert "evt_link" in nudge.reason


def test_the_nudge_reason_reads_as_clauses_without_empty_ones(ruleset: RuleSet) -> None:
    signup = event("signup_completed", SIGNUP_AT, event_id="evt_signup")
    link = event("link_bank_success", "2025-11-02T12:00:00+00:00")

    nudge = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert "signup_completed evt_signup at 2025-11-02T10:00:00Z is within 24h" in nudge.reason
    assert "; ;" not in nudge.reason


def test_two_links_within_the_window_send_one_nudge_and_suppress_the_other(
    ruleset: RuleSet,
) -> None:
    first = event("link_bank_success", "2025-11-02T11:00:00+00:00")
    second = event("link_bank_success", "2025-11-02T12:00:00+00:00")
    signup = event("signup_completed", SIGNUP_AT)

    nudges = of_rule(replay([second, first, signup], ruleset), "BANK_LINK_NUDGE_SMS")

    outcomes = [d.outcome for d in nudges if d.outcome is not Outcome.SKIPPED]
    assert sorted(outcomes) == [Outcome.SUPPRESSED, Outcome.TRIGGERED]


def test_a_nudge_suppressed_on_a_signup_names_the_link_it_is_about(ruleset: RuleSet) -> None:
    first = event("link_bank_success", "2025-11-02T11:00:00+00:00", event_id="link_1")
    second = event("link_bank_success", "2025-11-02T12:00:00+00:00", event_id="link_2")
    signup = event("signup_completed", SIGNUP_AT)

    decided_on_signup = of_rule(
        replay([first, second, signup], ruleset)[-2:], "BANK_LINK_NUDGE_SMS"
    )

    sent_for, suppressed_for = decided_on_signup
    assert sent_for.outcome is Outcome.TRIGGERED and "link_bank_success link_1 " in sent_for.reason
    assert suppressed_for.outcome is Outcome.SUPPRESSED
    assert "link_bank_success link_2 at 2025-11-02T12:00:00Z came within 24h" in (
        suppressed_for.reason
    )
    assert f"is held by message {sent_for.message_id}" in suppressed_for.reason


def test_a_user_without_a_phone_gets_no_nudge_and_the_reason_names_the_trait(
    ruleset: RuleSet,
) -> None:
    traits = {"email": "maria@example.com", "marketing_opt_in": True}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", "2025-11-02T12:00:00+00:00", traits=traits)

    decision = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert decision.outcome is Outcome.SKIPPED
    assert "no recipient" in decision.reason
    assert "phone" in decision.reason


def test_a_phone_sent_as_a_number_is_named_as_the_wrong_type_not_as_missing(
    ruleset: RuleSet,
) -> None:
    traits = {**TRAITS, "phone": 15551234567}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", "2025-11-02T12:00:00+00:00", traits=traits)

    decision = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason.endswith(
        'no recipient: the phone is a number, not a string like "+351 912 345 678"'
    )


def test_a_link_asks_for_the_day_before_it_and_a_signup_for_the_day_after_it(
    ruleset: RuleSet,
) -> None:
    moment = at(SIGNUP_AT)
    day = timedelta(hours=24)

    link_windows = engine.history_windows(event("link_bank_success", moment), ruleset)
    signup_windows = engine.history_windows(event("signup_completed", moment), ruleset)

    assert link_windows == [
        engine.HistoryWindow("signup_completed", moment - day, moment, latest=1)
    ]
    enough = engine.MAX_TRIGGERS_PER_ANCHOR + 1  # one more than it decides: it notes the rest
    assert signup_windows == [
        engine.HistoryWindow("link_bank_success", moment, moment + day, earliest=enough)
    ]
