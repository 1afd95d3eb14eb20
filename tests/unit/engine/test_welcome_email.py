"""WELCOME_EMAIL, the default rule that greets a user who signs up having opted in to
marketing, once per user."""

from __future__ import annotations

from herald.domain.model import Outcome
from herald.rules.definition import RuleSet
from tests.support.engine_replay import SIGNUP_AT, TRAITS, USER, event, of_rule, replay, the_one


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


def test_a_signup_whose_opt_in_was_sent_as_null_is_skipped_saying_it_is_null(
    ruleset: RuleSet,
) -> None:
    traits = {"email": "maria@example.com", "marketing_opt_in": None}

    decision = the_one(
        replay([event("signup_completed", SIGNUP_AT, traits=traits)], ruleset), "WELCOME_EMAIL"
    )

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        "`user.marketing_opt_in == true` could not be evaluated: user.marketing_opt_in is null"
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


def test_an_opt_in_sent_as_the_string_true_is_skipped_saying_it_is_not_the_boolean_declared(
    ruleset: RuleSet,
) -> None:
    # CEL finds "true" unequal to true without an error: the reason showed "true" beside
    # false, and read as Herald's mistake where it is the client's.
    signup = event("signup_completed", SIGNUP_AT, traits={**TRAITS, "marketing_opt_in": "true"})

    decision = the_one(replay([signup], ruleset), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        '`user.marketing_opt_in == true` is false (user.marketing_opt_in is "true"): '
        "user.marketing_opt_in is a string, not the boolean the rule file declares"
    )
