"""Consent: an unsubscribe stops marketing but not transactional messages, and a
marketing message needs an opt-in stated as true."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from herald.domain.model import Outcome, UserProfile
from herald.domain.timeutil import to_micros
from herald.rules.definition import RuleSet
from herald.rules.eligibility import closed_by
from herald.rules.loader import load_ruleset
from tests.support.engine_replay import SIGNUP_AT, TRAITS, at, event, replay, the_one

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


UNSUBSCRIBED_AT = "2025-11-02T09:30:00Z"


@pytest.mark.parametrize(
    ("api", "trait", "since", "why"),
    [
        (["email"], [], UNSUBSCRIBED_AT, f"unsubscribed from email at {UNSUBSCRIBED_AT}"),
        (["marketing"], [], UNSUBSCRIBED_AT, f"from all marketing at {UNSUBSCRIBED_AT}"),
        (["email"], [], None, "marketing rule and the user unsubscribed from email"),
        # The trait closes all of marketing, the API only email: the time is not of that.
        (["email"], ["all"], UNSUBSCRIBED_AT, "the user unsubscribed from all marketing"),
    ],
    ids=["channel", "all_marketing", "time_unknown", "trait_says_more"],
)
def test_a_welcome_skipped_for_an_api_unsubscribe_says_since_when_when_known(
    api: list[str], trait: list[str], since: str | None, why: str, ruleset: RuleSet
) -> None:
    signup = event("signup_completed", SIGNUP_AT, traits={**TRAITS, "unsubscribed": trait})
    when = None if since is None else to_micros(at(since))

    decisions = replay([signup], ruleset, unsubscribed=api, unsubscribed_us=when)

    assert the_one(decisions, "WELCOME_EMAIL").reason.endswith(why)


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


def unsubscribed_ruleset(tmp_path: Path) -> RuleSet:
    """UNSUBSCRIBED_RULES, written with its template in ``tmp_path`` and loaded."""
    (tmp_path / "rules.yaml").write_text(UNSUBSCRIBED_RULES, encoding="utf-8")
    folder = tmp_path / "templates" / "device"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("New device")
    (folder / "body.txt").write_text("Was it you?")
    return load_ruleset(tmp_path / "rules.yaml")


@pytest.mark.parametrize("said", [{}, {"unsubscribed": None}], ids=["absent", "null"])
def test_a_user_who_never_unsubscribed_has_an_empty_unsubscribed_list(
    said: dict[str, object], tmp_path: Path
) -> None:
    # Herald keeps the list from the API and the trait together; with neither, a condition
    # reading it failed ("user.unsubscribed is missing") and skipped every such user. A
    # trait sent as null holds no name either.
    login = event("login_new_device", SIGNUP_AT, traits={"email": "maria@example.com", **said})

    decision = the_one(replay([login], unsubscribed_ruleset(tmp_path)), "NEW_DEVICE_EMAIL")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.reason.startswith(
        '`!("email" in user.unsubscribed)` is true (user.unsubscribed is [])'
    )


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


@pytest.mark.parametrize(
    "withdrawn",
    [{"marketing_opt_in": False}, {"unsubscribed": ["email"]}],
    ids=["opt-in false", "unsubscribed"],
)
def test_a_signup_skipped_for_a_later_withdrawal_says_when_that_event_was(
    ruleset: RuleSet, withdrawn: dict[str, object]
) -> None:
    # The opt-out, dated an hour after the signup, arrived first: "as an event later than
    # this one says" left a support agent to search the user's events for which one.
    later = event(
        "payment_initiated",
        at(SIGNUP_AT) + timedelta(hours=1),
        properties={"amount": 5},
        traits=withdrawn,
    )
    # Its own traits consent: opted in, unsubscribed from nothing.
    signup = event("signup_completed", SIGNUP_AT, traits={**TRAITS, "unsubscribed": []})

    welcome = the_one(replay([later, signup], ruleset), "WELCOME_EMAIL")

    assert welcome.outcome is Outcome.SKIPPED
    when = (at(SIGNUP_AT) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert welcome.reason.endswith(
        f", as the user's {withdrawn_name(withdrawn)} from an event at {when}, later than "
        "this one, says"
    ), welcome.reason


def withdrawn_name(withdrawn: dict[str, object]) -> str:
    return next(iter(withdrawn))


def test_what_closed_a_channel_names_the_api_unsubscribe_or_the_trait_and_its_time() -> None:
    at_noon = to_micros(at("2025-11-03T12:00:00+00:00"))
    by_trait = UserProfile("u", {"marketing_opt_in": False}, {"marketing_opt_in": at_noon})
    by_api = UserProfile("u", {"marketing_opt_in": True}, unsubscribed=frozenset({"sms"}))
    by_list = UserProfile("u", {"unsubscribed": ["email"]}, {"unsubscribed": at_noon})

    assert closed_by(by_trait, "sms") == (
        "their marketing_opt_in is false, from an event at 2025-11-03T12:00:00Z"
    )
    assert closed_by(by_api, "sms") == "they unsubscribed through POST /users/{id}/preferences"
    by_api_since = UserProfile(
        "u", unsubscribed=frozenset({"sms"}), unsubscribed_times={"sms": at_noon}
    )
    assert closed_by(by_api_since, "sms") == (
        "they unsubscribed through POST /users/{id}/preferences at 2025-11-03T12:00:00Z"
    )
    at_one = to_micros(at("2025-11-03T13:00:00+00:00"))
    apart = UserProfile(
        "u",
        unsubscribed=frozenset({"email", "sms"}),
        unsubscribed_times={"email": at_noon, "sms": at_one},
    )
    assert closed_by(apart, "email").endswith(" at 2025-11-03T12:00:00Z")  # its own, not sms's
    assert closed_by(apart, "sms").endswith(" at 2025-11-03T13:00:00Z")
    assert closed_by(by_list, "email") == (
        'their unsubscribed is ["email"], from an event at 2025-11-03T12:00:00Z'
    )


@pytest.mark.parametrize(
    ("said", "api", "seen", "outcome"),
    [
        (["EMAIL", "Push"], [], ["email", "Push"], Outcome.SKIPPED),
        (["Email"], ["email"], ["email"], Outcome.SKIPPED),
        (["ALL"], ["sms"], ["sms", "all"], Outcome.TRIGGERED),
    ],
    ids=["trait_alone", "trait_and_api_alike", "trait_and_api"],
)
def test_a_condition_sees_herald_s_unsubscribe_names_in_lower_case_as_herald_reads_them(
    said: list[str], api: list[str], seen: list[str], outcome: Outcome, tmp_path: Path
) -> None:
    # Herald reads them in any case, and so stopped marketing email for ["EMAIL"]; but a
    # rule's `"email" in user.unsubscribed` was false, and sent the user its message.
    traits = {"email": "maria@example.com", "unsubscribed": said}
    login = event("login_new_device", SIGNUP_AT, traits=traits)

    ruleset = unsubscribed_ruleset(tmp_path)
    decision = the_one(replay([login], ruleset, unsubscribed=api), "NEW_DEVICE_EMAIL")

    assert decision.outcome is outcome
    shown = ",".join(f'"{name}"' for name in seen)
    assert f"(user.unsubscribed is [{shown}])" in decision.reason
