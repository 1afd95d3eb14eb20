"""Who a message goes to: an email or phone trait is a recipient only when it is one plain
address or number that can be stored."""

from __future__ import annotations

import pytest

from herald.domain.model import Outcome
from herald.rules.definition import RuleSet
from tests.support.engine_replay import SIGNUP_AT, TRAITS, event, replay, the_one


def test_a_recipient_longer_than_can_be_stored_is_no_recipient(ruleset: RuleSet) -> None:
    traits = {**TRAITS, "email": "a" * 320 + "@example.com"}
    signup = event("signup_completed", SIGNUP_AT, traits=traits)

    decision = the_one(replay([signup], ruleset), "WELCOME_EMAIL")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason.endswith("; no recipient: the email is longer than 320 characters")


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
