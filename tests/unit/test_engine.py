"""The rule engine on its own: events, a user and their history in; decisions out.

``replay`` plays the service's part by hand: it remembers the events that arrived,
hands ``evaluate`` the slices ``history_windows`` asks for, and holds dedup keys the
way the outbox does, so arrival order can be tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from herald.domain.model import Decision, Event, Outcome, UserProfile
from herald.domain.timeutil import to_micros
from herald.rules import engine
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset

USER = "u_1"
TRAITS: dict[str, Any] = {
    "email": "maria@example.com",
    "phone": "+351912345678",
    "marketing_opt_in": True,
}
SIGNUP_AT = "2025-11-02T10:00:00+00:00"


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def event(
    event_type: str,
    when: str | datetime,
    *,
    event_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    traits: Mapping[str, Any] = TRAITS,
) -> Event:
    timestamp = at(when) if isinstance(when, str) else when
    return Event(
        event_id=event_id or f"{event_type}@{timestamp.isoformat()}",
        user_id=USER,
        event_type=event_type,
        timestamp=timestamp,
        properties=dict(properties or {}),
        user_traits=dict(traits),
    )


def payment_failed(
    when: str, *, reason: str = "INSUFFICIENT_FUNDS", attempt: int = 1, event_id: str | None = None
) -> Event:
    properties = {"amount": 25.0, "attempt_number": attempt, "failure_reason": reason}
    return event("payment_failed", when, properties=properties, event_id=event_id)


def replay(
    arrivals: Iterable[Event],
    ruleset: RuleSet,
    *,
    profile_traits: Mapping[str, Any] | None = None,
    unsubscribed: Iterable[str] = (),
) -> list[Decision]:
    """Every decision made while ``arrivals`` come in one by one, limits applied;
    ``unsubscribed``: what the user unsubscribed from through the API."""
    known: list[Event] = []
    held: dict[str, str] = {}
    profile = UserProfile(USER, dict(profile_traits or {}), unsubscribed=frozenset(unsubscribed))
    decisions: list[Decision] = []
    for arriving in arrivals:
        profile = profile.merged(arriving.user_traits, to_micros(arriving.timestamp))
        history = [
            other
            for window in engine.history_windows(arriving, ruleset)
            for other in known
            if other.event_type == window.event_type
            and window.start <= other.timestamp <= window.end
        ]
        candidates = engine.evaluate(arriving, profile, history, ruleset)
        for decision in engine.apply_limits(candidates, held):
            if decision.draft is not None:
                held[decision.draft.dedup_key] = decision.draft.message_id
            decisions.append(decision)
        known.append(arriving)
    return decisions


def of_rule(decisions: Sequence[Decision], rule: str) -> list[Decision]:
    return [decision for decision in decisions if decision.rule == rule]


def the_one(decisions: Sequence[Decision], rule: str) -> Decision:
    found = of_rule(decisions, rule)
    assert len(found) == 1, found
    return found[0]


def sent(decisions: Sequence[Decision], rule: str) -> list[Decision]:
    return [d for d in of_rule(decisions, rule) if d.outcome is Outcome.TRIGGERED]


# WELCOME_EMAIL


def test_a_signup_with_marketing_opt_in_sends_a_welcome_email_to_the_user(
    ruleset: RuleSet,
) -> None:
    decision = the_one(replay([event("signup_completed", SIGNUP_AT)], ruleset), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.draft is not None
    assert (decision.draft.channel, decision.draft.recipient) == ("email", "maria@example.com")
    assert decision.dedup_key == f"WELCOME_EMAIL:{USER}"
    assert decision.rule_version == next(
        r.version for r in ruleset.rules if r.id == "WELCOME_EMAIL"
    )


def test_a_signup_without_marketing_opt_in_is_skipped_and_the_reason_says_so(
    ruleset: RuleSet,
) -> None:
    signup = event("signup_completed", SIGNUP_AT, traits={**TRAITS, "marketing_opt_in": False})

    decision = the_one(replay([signup], ruleset), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    assert "marketing_opt_in is false" in decision.reason
    assert decision.message_id is None


def test_a_signup_that_does_not_mention_opt_in_is_skipped_naming_the_missing_trait(
    ruleset: RuleSet,
) -> None:
    traits = {"email": "maria@example.com"}

    decision = the_one(
        replay([event("signup_completed", SIGNUP_AT, traits=traits)], ruleset), "WELCOME_EMAIL"
    )

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        "`user.marketing_opt_in == true` could not be evaluated: user.marketing_opt_in is missing"
    )


def test_a_user_without_an_email_address_gets_no_welcome_and_the_reason_names_the_trait(
    ruleset: RuleSet,
) -> None:
    signup = event("signup_completed", SIGNUP_AT, traits={"marketing_opt_in": True})

    decision = the_one(replay([signup], ruleset), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    # Everything that held is said too: the condition passed, only the address is missing.
    assert decision.reason == (
        "`user.marketing_opt_in == true` is true (user.marketing_opt_in is true); "
        "no recipient: user has no email for channel email"
    )


def test_a_second_signup_of_the_same_user_is_suppressed_by_the_first_welcome(
    ruleset: RuleSet,
) -> None:
    first = event("signup_completed", SIGNUP_AT)
    second = event("signup_completed", "2025-12-01T10:00:00+00:00")

    first_decision, second_decision = of_rule(replay([first, second], ruleset), "WELCOME_EMAIL")

    assert first_decision.outcome is Outcome.TRIGGERED
    assert second_decision.outcome is Outcome.SUPPRESSED
    assert second_decision.message_id == first_decision.message_id
    assert "once_per_user" in second_decision.reason
    assert f"WELCOME_EMAIL:{USER}" in second_decision.reason
    assert str(first_decision.message_id) in second_decision.reason


# BANK_LINK_NUDGE_SMS: the 24-hour window, in both arrival orders

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


# INSUFFICIENT_FUNDS_EMAIL and HIGH_RISK_ALERT: once per user per UTC day

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


# Unsubscribes: marketing stops, transactional messages keep coming


def marketing_and_transactional(
    ruleset: RuleSet, unsubscribed: list[str], *, on_profile: bool
) -> dict[str, Outcome]:
    traits = dict(TRAITS) if on_profile else {**TRAITS, "unsubscribed": unsubscribed}
    events = [
        event("signup_completed", SIGNUP_AT, traits=traits),
        event("link_bank_success", "2025-11-02T12:00:00+00:00", traits=traits),
        event(
            "payment_failed",
            "2025-11-02T13:00:00+00:00",
            properties={"amount": 5.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
            traits=traits,
        ),
    ]
    decisions = replay(events, ruleset, unsubscribed=unsubscribed if on_profile else ())
    return {d.rule: d.outcome for d in decisions}


@pytest.mark.parametrize("on_profile", [False, True], ids=["event_trait", "saved_preference"])
@pytest.mark.parametrize(
    ("unsubscribed", "welcome", "nudge"),
    [
        (["email"], Outcome.SKIPPED, Outcome.TRIGGERED),
        (["sms"], Outcome.TRIGGERED, Outcome.SKIPPED),
        (["marketing"], Outcome.SKIPPED, Outcome.SKIPPED),
    ],
)
def test_an_unsubscribe_stops_marketing_but_not_transactional_messages(
    unsubscribed: list[str],
    welcome: Outcome,
    nudge: Outcome,
    on_profile: bool,
    ruleset: RuleSet,
) -> None:
    outcomes = marketing_and_transactional(ruleset, unsubscribed, on_profile=on_profile)

    assert outcomes["WELCOME_EMAIL"] is welcome
    assert outcomes["BANK_LINK_NUDGE_SMS"] is nudge
    assert outcomes["INSUFFICIENT_FUNDS_EMAIL"] is Outcome.TRIGGERED


@pytest.mark.parametrize(
    ("said", "why"),
    [
        ([], "unsubscribed from email"),
        (False, "unsubscribed from email"),
        (None, "unsubscribed from email"),
        (["sms"], "unsubscribed from email"),
        # Not a list of names: read as an unsubscribe from all marketing.
        ([["email"]], "cannot be read"),
        ([{"c": 1}], "cannot be read"),
        ("email", "cannot be read"),
    ],
    ids=repr,
)
def test_an_event_s_unsubscribed_trait_cannot_undo_an_unsubscribe_made_through_the_api(
    said: object, why: str, ruleset: RuleSet
) -> None:
    signup = event("signup_completed", SIGNUP_AT, traits={**TRAITS, "unsubscribed": said})

    decision = the_one(replay([signup], ruleset, unsubscribed=["email"]), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    assert why in decision.reason


def test_an_unsubscribed_welcome_says_which_unsubscribe_stopped_it(ruleset: RuleSet) -> None:
    signup = event("signup_completed", SIGNUP_AT, traits={**TRAITS, "unsubscribed": ["email"]})

    decision = the_one(replay([signup], ruleset), "WELCOME_EMAIL")

    assert "unsubscribed from email" in decision.reason


UNSUBSCRIBED_RULES = """
events:
  login_new_device: {}
traits:
  email: string
  unsubscribed: array
rules:
  - id: NEW_DEVICE_EMAIL
    trigger: login_new_device
    when: '!("email" in user.unsubscribed)'
    channel: email
    category: transactional
    template: device
"""


def test_a_user_who_never_unsubscribed_has_an_empty_unsubscribed_list(tmp_path: Path) -> None:
    # Herald keeps the list from the API and the trait together; with neither, a condition
    # reading it failed ("user.unsubscribed is missing") and skipped every such user.
    (tmp_path / "rules.yaml").write_text(UNSUBSCRIBED_RULES, encoding="utf-8")
    folder = tmp_path / "templates" / "device"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("New device")
    (folder / "body.txt").write_text("Was it you?")
    login = event("login_new_device", SIGNUP_AT, traits={"email": "maria@example.com"})

    decision = the_one(replay([login], load_ruleset(tmp_path / "rules.yaml")), "NEW_DEVICE_EMAIL")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.reason.startswith(
        '`!("email" in user.unsubscribed)` is true (user.unsubscribed is [])'
    )


# A custom rule file: a condition over a property the event may not carry

CUSTOM_RULES = """
events:
  plan_changed:
    properties:
      plan: {type: string}
traits:
  seats: integer
rules:
  - id: PRO_UPGRADE_ALERT
    trigger: plan_changed
    when: event.properties.plan == "pro" && user.seats > 1
    channel: internal
    limit: once_per_event
"""


@pytest.fixture
def custom_ruleset(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(CUSTOM_RULES, encoding="utf-8")
    return load_ruleset(path)


@pytest.mark.parametrize(
    ("properties", "traits", "missing"),
    [({}, {"seats": 3}, "event.properties.plan"), ({"plan": "pro"}, {}, "user.seats")],
    ids=["missing_property", "missing_trait"],
)
def test_a_condition_over_a_missing_value_is_skipped_with_the_error_not_raised(
    properties: dict[str, Any],
    traits: dict[str, Any],
    missing: str,
    custom_ruleset: RuleSet,
) -> None:
    changed = event("plan_changed", SIGNUP_AT, properties=properties, traits=traits)

    decision = the_one(replay([changed], custom_ruleset), "PRO_UPGRADE_ALERT")

    assert decision.outcome is Outcome.SKIPPED
    assert "could not be evaluated" in decision.reason
    assert decision.reason.endswith(f"could not be evaluated: {missing} is missing")


ABROAD_RULES = """
events:
  plan_changed: {}
traits:
  country: string
rules:
  - id: NOT_US
    trigger: plan_changed
    when: user.country != "US"
    channel: internal
    limit: once_per_event
  - id: NOT_US_OR_UNKNOWN
    trigger: plan_changed
    when: '!has(user.country) || user.country != "US"'
    channel: internal
    limit: once_per_event
"""


def test_an_absent_trait_skips_even_an_inequality_unless_the_condition_tests_it_first(
    tmp_path: Path,
) -> None:
    # As the README's `when` row says: CEL fails on the absent value, whatever the
    # comparison, and the rule skips; `!has(...) ||` is how to include such users.
    (tmp_path / "rules.yaml").write_text(ABROAD_RULES, encoding="utf-8")
    ruleset = load_ruleset(tmp_path / "rules.yaml")
    changed = event("plan_changed", SIGNUP_AT, traits={})

    decisions = replay([changed], ruleset)

    skipped = the_one(decisions, "NOT_US")
    assert skipped.outcome is Outcome.SKIPPED
    assert skipped.reason.endswith("could not be evaluated: user.country is missing")
    assert the_one(decisions, "NOT_US_OR_UNKNOWN").outcome is Outcome.TRIGGERED


def test_a_condition_over_a_value_of_the_wrong_type_is_skipped_with_the_error(
    custom_ruleset: RuleSet,
) -> None:
    changed = event("plan_changed", SIGNUP_AT, properties={"plan": "pro"}, traits={"seats": "3"})

    decision = the_one(replay([changed], custom_ruleset), "PRO_UPGRADE_ALERT")

    assert decision.outcome is Outcome.SKIPPED
    # The values show which operand is of another type, and the reason says it is the
    # client's: CEL's own error named none, and advised converting types in the rule.
    assert decision.reason == (
        '`event.properties.plan == "pro" && user.seats > 1` could not be evaluated '
        '(event.properties.plan is "pro", user.seats is "3"): '
        "user.seats is a string, not the integer the rule file declares"
    )


NESTED_RULES = """
events:
  plan_changed:
    properties:
      meta: {type: object}
rules:
  - id: REFERRED_ALERT
    trigger: plan_changed
    when: has(event.properties.meta.referrer)
    channel: internal
"""


NULL_RULES = """
events:
  plan_changed:
    properties:
      plan: {type: string}
      seats: {type: integer}
traits:
  email: string
rules:
  - id: PLAN_EMAIL
    trigger: plan_changed
    when: '!has(event.properties.seats) || event.properties.seats > 1'
    channel: email
    category: transactional
    template: plan
"""


def test_an_optional_property_sent_as_null_is_absent_to_conditions_and_templates(
    tmp_path: Path,
) -> None:
    # Ingestion takes a null as no value, but rules saw it: `has()` held and the
    # comparison failed ("No such overload"), and `default` did not apply to it.
    (tmp_path / "rules.yaml").write_text(NULL_RULES, encoding="utf-8")
    folder = tmp_path / "templates" / "plan"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text('Your plan: {{ event.properties.plan | default("free") }}')
    (folder / "body.txt").write_text("Thanks")
    changed = event(
        "plan_changed",
        SIGNUP_AT,
        properties={"plan": None, "seats": None},
        traits={"email": "maria@example.com"},
    )

    ruleset = load_ruleset(tmp_path / "rules.yaml")

    decision = the_one(replay([changed], ruleset), "PLAN_EMAIL")

    assert decision.outcome is Outcome.TRIGGERED, decision.reason
    assert decision.draft is not None
    context = {"event": decision.draft.event_view, "user": decision.draft.user_view}
    assert ruleset.templates.render("plan", context).subject == "Your plan: free"


def test_a_has_test_of_a_key_inside_an_absent_object_names_what_to_test_first(
    tmp_path: Path,
) -> None:
    # CEL's has() tests the last field alone: it said "event.properties.meta.referrer is
    # missing", the very thing has() was written to test.
    path = tmp_path / "rules.yaml"
    path.write_text(NESTED_RULES, encoding="utf-8")
    changed = event("plan_changed", SIGNUP_AT, properties={}, traits={})

    decision = the_one(replay([changed], load_ruleset(path)), "REFERRED_ALERT")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        "`has(event.properties.meta.referrer)` could not be evaluated: event.properties.meta"
        " is missing, and has(event.properties.meta.referrer) needs it to be there: test"
        " has(event.properties.meta) first"
    )


def test_the_custom_rule_fires_when_its_values_are_present(custom_ruleset: RuleSet) -> None:
    changed = event("plan_changed", SIGNUP_AT, properties={"plan": "pro"}, traits={"seats": 3})

    decision = the_one(replay([changed], custom_ruleset), "PRO_UPGRADE_ALERT")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.dedup_key == f"PRO_UPGRADE_ALERT:{USER}:{changed.event_id}"


MACRO_RULES = """
events:
  kyc_failed:
    properties:
      reasons: {type: array, required: true}
traits:
  segments: array
rules:
  - id: KYC_DOCUMENT_ALERT
    trigger: kyc_failed
    when: event.properties.reasons.exists(r, r.startsWith("DOC_")) && user.segments.all(s, s != "x")
    channel: internal
"""


def test_a_reason_shows_the_values_a_condition_reads_not_the_methods_it_calls(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(MACRO_RULES, encoding="utf-8")
    failed = event(
        "kyc_failed", SIGNUP_AT, properties={"reasons": ["DOC_BLURRY"]}, traits={"segments": []}
    )

    decision = the_one(replay([failed], load_ruleset(path)), "KYC_DOCUMENT_ALERT")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.reason.startswith(
        '`event.properties.reasons.exists(r, r.startsWith("DOC_")) && user.segments.all(s, s '
        '!= "x")` is true (event.properties.reasons is ["DOC_BLURRY"], user.segments is []);'
    )


def test_a_recipient_longer_than_can_be_stored_is_no_recipient(ruleset: RuleSet) -> None:
    traits = {**TRAITS, "email": "a" * 320 + "@example.com"}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)

    decision = the_one(replay([signup], ruleset), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason.endswith("; no recipient: the email is longer than 320 characters")


def test_a_once_per_event_key_of_the_longest_ids_still_fits_and_stays_distinct(
    custom_ruleset: RuleSet,
) -> None:
    [rule] = custom_ruleset.rules
    long_user, ids = "u" * 128, ("e" * 127 + "1", "e" * 127 + "2")
    keys = [engine.dedup_key(rule, Event(i, long_user, "plan_changed", at(SIGNUP_AT))) for i in ids]
    again = engine.dedup_key(rule, Event(ids[0], long_user, "plan_changed", at(SIGNUP_AT)))

    assert all(len(key) <= 300 for key in keys)
    assert keys[0] != keys[1] and keys[0] == again
    assert engine.dedup_key(rule, event("plan_changed", SIGNUP_AT, event_id="e1")) == (
        f"PRO_UPGRADE_ALERT:{USER}:e1"
    )


def test_once_per_event_keys_of_users_whose_ids_hold_a_colon_stay_apart(
    custom_ruleset: RuleSet,
) -> None:
    [rule] = custom_ruleset.rules

    one = engine.dedup_key(rule, Event("c", "a:b", "plan_changed", at(SIGNUP_AT)))
    other = engine.dedup_key(rule, Event("b:c", "a", "plan_changed", at(SIGNUP_AT)))

    assert one != other
    assert one == engine.dedup_key(rule, Event("c", "a:b", "plan_changed", at(SIGNUP_AT)))


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

    decisions = engine.evaluate(late, user, [], ruleset)

    assert [(d.rule, d.outcome) for d in decisions] == [
        ("INSUFFICIENT_FUNDS_EMAIL", Outcome.SKIPPED),
        ("HIGH_RISK_ALERT", Outcome.SKIPPED),
    ]
    assert decisions[0].reason == (
        "the user's history before 2025-11-02T00:00:00Z was pruned, and this payment_failed "
        "at 2025-11-01T21:00:00Z is older: its limits cannot be checked"
    )


def test_an_event_since_the_pruned_history_is_decided_as_usual(ruleset: RuleSet) -> None:
    user = UserProfile(
        USER, TRAITS, {}, pruned_before_us=to_micros(at("2025-11-02T00:00:00+00:00"))
    )

    decisions = engine.evaluate(payment_failed("2025-11-02T00:00:00+00:00"), user, [], ruleset)

    assert decisions[0].outcome is Outcome.TRIGGERED


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("maria@example.com, eve@evil.test", "has a comma: one address only"),
        ("Maria <maria@example.com>", "has a display name or angle brackets"),
        ("maria@example.com eve@evil.test", "has whitespace"),
        (" maria@example.com", "has whitespace"),
        ("maria.example.com", "has no @"),
        ("maria@example.com@evil.test", "has more than one @"),
        ("maria@", "has nothing after the @"),
        ("@example.com", "has nothing before the @"),
        ("maria@example.com;eve@evil.test", "has a `;`"),
        ('"maria"@example.com', 'has a `"`'),
    ],
)
def test_an_email_trait_that_is_not_one_plain_address_is_no_recipient(
    ruleset: RuleSet, email: str, problem: str
) -> None:
    signup = event("signup_completed", SIGNUP_AT, traits={**TRAITS, "email": email})

    decision = the_one(replay([signup], ruleset), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        "`user.marketing_opt_in == true` is true (user.marketing_opt_in is true); "
        f"no recipient: the email is not one plain address like maria@example.com ({problem})"
    )


@pytest.mark.parametrize(
    ("phone", "problem"),
    [
        ("+351 912 345 678, +351 900 000 000", "has a `,`"),
        ("call me", "has a `c`"),
        ("+351912345678x12", "has a `x`"),
        ("12", "has 2 digits, not 3 to 15"),
        ("+1234567890123456", "has 16 digits, not 3 to 15"),
        ("351+912345678", "has a + that does not start it"),
        (" +351912345678", "starts or ends with whitespace"),
        ("--", "has 0 digits, not 3 to 15"),
    ],
)
def test_a_phone_trait_that_is_not_one_phone_number_is_no_recipient(
    ruleset: RuleSet, phone: str, problem: str
) -> None:
    traits = {**TRAITS, "phone": phone}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", "2025-11-02T12:00:00+00:00", traits=traits)

    decision = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason.endswith(
        f"; no recipient: the phone is not one phone number like +351 912 345 678 ({problem})"
    )


@pytest.mark.parametrize(
    ("trait", "value"),
    [
        ("email", "maria.silva+herald@mail.example.com"),
        ("email", "maria@localhost"),
        ("phone", "+351 912 345 678"),
        ("phone", "(555) 123-4567"),
        ("phone", "555.123.4567"),
        ("phone", "12345"),
    ],
)
def test_one_plain_address_or_phone_number_is_a_recipient_as_written(
    ruleset: RuleSet, trait: str, value: str
) -> None:
    traits = {**TRAITS, trait: value}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", "2025-11-02T12:00:00+00:00", traits=traits)
    rule = "WELCOME_EMAIL" if trait == "email" else "BANK_LINK_NUDGE_SMS"

    decision = the_one(replay([signup, link], ruleset), rule)

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.draft is not None and decision.draft.recipient == value


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


@pytest.mark.parametrize("stated", [False, None, "false", "no", 0])
def test_a_marketing_message_needs_a_stated_opt_in_to_be_true_itself(
    ruleset: RuleSet, stated: object
) -> None:
    traits = {**TRAITS, "marketing_opt_in": stated}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", at(SIGNUP_AT) + timedelta(hours=1), traits=traits)

    nudge = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert nudge.outcome is Outcome.SKIPPED
    assert "has not opted in (marketing_opt_in is " in nudge.reason


def test_a_long_stated_opt_in_is_cut_short_in_the_reason(ruleset: RuleSet) -> None:
    traits = {**TRAITS, "marketing_opt_in": "n" * 100_000}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", at(SIGNUP_AT) + timedelta(hours=1), traits=traits)

    nudge = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert nudge.outcome is Outcome.SKIPPED
    assert f'(marketing_opt_in is "{"n" * 79})' in nudge.reason


def test_a_bank_link_nudge_needs_no_stated_opt_in(ruleset: RuleSet) -> None:
    """The nudge's own rule asks for none: an unstated opt-in is not an opt-out."""
    traits = {k: v for k, v in TRAITS.items() if k != "marketing_opt_in"}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)
    link = event("link_bank_success", at(SIGNUP_AT) + timedelta(hours=1), traits=traits)

    nudge = the_one(replay([signup, link], ruleset), "BANK_LINK_NUDGE_SMS")

    assert nudge.outcome is Outcome.TRIGGERED
