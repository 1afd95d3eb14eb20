"""Rules of a custom rule file: conditions over properties and traits an event may lack
or send as another type, the reasons they give, and their once-per-event keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herald.domain.model import Event, Outcome
from herald.rules import limits
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset
from tests.support.engine_replay import SIGNUP_AT, USER, at, event, replay, the_one

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


@pytest.mark.parametrize(
    ("properties", "traits", "said"),
    [
        (
            {"Plan": "pro"},
            {"seats": 3},
            "event.properties.plan is missing, but event.properties holds Plan, spelt like it",
        ),
        (
            {"plan": "pro"},
            {"seat": 3},
            "user.seats is missing, but user holds seat, spelt like it",
        ),
    ],
    ids=["property", "trait"],
)
def test_a_missing_value_the_event_sends_spelt_otherwise_is_named_in_the_reason(
    properties: dict[str, Any], traits: dict[str, Any], said: str, custom_ruleset: RuleSet
) -> None:
    """Kept as an undeclared property or trait, a client's typo is what the rule never
    reads: said only to be missing, the value looked not sent at all."""
    changed = event("plan_changed", SIGNUP_AT, properties=properties, traits=traits)

    decision = the_one(replay([changed], custom_ruleset), "PRO_UPGRADE_ALERT")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason.endswith(f"could not be evaluated: {said}")


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


@pytest.mark.parametrize(
    ("traits", "said"),
    [({}, "missing"), ({"country": None}, "null")],
    ids=["absent", "sent_as_null"],
)
def test_an_absent_trait_skips_even_an_inequality_unless_the_condition_tests_it_first(
    traits: dict[str, Any], said: str, tmp_path: Path
) -> None:
    # As the README's `when` row says: CEL fails on the absent value, whatever the
    # comparison, and the rule skips; `!has(...) ||` is how to include such users. A
    # trait sent as null (a client's serializer writing every field) is no value either:
    # `has()` held for it, and the rule skipped the user it was written to include.
    (tmp_path / "rules.yaml").write_text(ABROAD_RULES, encoding="utf-8")
    ruleset = load_ruleset(tmp_path / "rules.yaml")
    changed = event("plan_changed", SIGNUP_AT, traits=traits)

    decisions = replay([changed], ruleset)

    skipped = the_one(decisions, "NOT_US")
    assert skipped.outcome is Outcome.SKIPPED
    # A trait sent as null is said so: "missing" sent a support agent looking for a client
    # that left it out, when it sent it, as null.
    assert skipped.reason.endswith(f"could not be evaluated: user.country is {said}")
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


def test_a_property_sent_as_null_is_said_to_be_null_not_missing(
    custom_ruleset: RuleSet,
) -> None:
    changed = event("plan_changed", SIGNUP_AT, properties={"plan": None}, traits={"seats": 3})

    decision = the_one(replay([changed], custom_ruleset), "PRO_UPGRADE_ALERT")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason.endswith("could not be evaluated: event.properties.plan is null")


def test_the_values_a_condition_read_say_which_was_sent_as_null(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(ABROAD_RULES, encoding="utf-8")
    changed = event("plan_changed", SIGNUP_AT, traits={"country": None})

    decision = the_one(replay([changed], load_ruleset(path)), "NOT_US_OR_UNKNOWN")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.reason.startswith(
        '`!has(user.country) || user.country != "US"` is true (user.country is null)'
    )


def test_a_has_test_of_a_key_inside_an_object_sent_as_null_says_it_is_null(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(NESTED_RULES, encoding="utf-8")
    changed = event("plan_changed", SIGNUP_AT, properties={"meta": None}, traits={})

    decision = the_one(replay([changed], load_ruleset(path)), "REFERRED_ALERT")

    assert decision.reason == (
        "`has(event.properties.meta.referrer)` could not be evaluated: event.properties.meta"
        " is null, and has(event.properties.meta.referrer) needs it to be there: test"
        " has(event.properties.meta) first"
    )


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


def test_a_once_per_event_key_of_the_longest_ids_still_fits_and_stays_distinct(
    custom_ruleset: RuleSet,
) -> None:
    [rule] = custom_ruleset.rules
    long_user, ids = "u" * 128, ("e" * 127 + "1", "e" * 127 + "2")
    keys = [limits.dedup_key(rule, Event(i, long_user, "plan_changed", at(SIGNUP_AT))) for i in ids]
    again = limits.dedup_key(rule, Event(ids[0], long_user, "plan_changed", at(SIGNUP_AT)))

    assert all(len(key) <= 300 for key in keys)
    assert keys[0] != keys[1] and keys[0] == again
    assert limits.dedup_key(rule, event("plan_changed", SIGNUP_AT, event_id="e1")) == (
        f"PRO_UPGRADE_ALERT:{USER}:e1"
    )


def test_once_per_event_keys_of_users_whose_ids_hold_a_colon_stay_apart(
    custom_ruleset: RuleSet,
) -> None:
    [rule] = custom_ruleset.rules

    one = limits.dedup_key(rule, Event("c", "a:b", "plan_changed", at(SIGNUP_AT)))
    other = limits.dedup_key(rule, Event("b:c", "a", "plan_changed", at(SIGNUP_AT)))

    assert one != other
    assert one == limits.dedup_key(rule, Event("c", "a:b", "plan_changed", at(SIGNUP_AT)))


FLAG_RULES = """
events:
  plan_changed:
    properties:
      meta: {type: object}
traits:
  vip: boolean
rules:
  - id: VIP
    trigger: plan_changed
    when: user.vip
    channel: internal
  - id: META_FLAG
    trigger: plan_changed
    when: event.properties.meta.beta
    channel: internal
"""


def test_a_condition_that_is_a_value_of_another_type_says_so_as_cel_and_the_file_do(
    tmp_path: Path,
) -> None:
    # It said "`user.vip` returned 'true', not a bool": Python's spelling and type name,
    # where `!user.vip` said the trait was not of its declared type.
    (tmp_path / "rules.yaml").write_text(FLAG_RULES, encoding="utf-8")
    ruleset = load_ruleset(tmp_path / "rules.yaml")
    changed = event(
        "plan_changed", SIGNUP_AT, properties={"meta": {"beta": "yes"}}, traits={"vip": "true"}
    )

    decisions = replay([changed], ruleset)

    assert the_one(decisions, "VIP").reason == (
        '`user.vip` could not be evaluated (user.vip is "true"): '
        "user.vip is a string, not the boolean the rule file declares"
    )
    assert the_one(decisions, "META_FLAG").reason == (
        '`event.properties.meta.beta` gives "yes", a string, not true or false'
        ' (event.properties.meta.beta is "yes")'
    )
