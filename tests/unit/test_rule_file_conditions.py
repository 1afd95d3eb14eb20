"""A condition that can never hold is refused when the rule file loads, not skipped on
every event: it is tried on an event with every declared property and trait."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.loader import RuleFileError, load_ruleset

EVENTS = """
events:
  signup_completed:
    properties:
      plan: {type: string}
  link_bank_success: {}
  payment_failed:
    properties:
      amount: {type: number, required: true}
      attempt_number: {type: integer}
      failure_reason: {type: string}
      metadata: {type: object}
      source: {type: string, enum: [app, web]}
traits:
  email: string
  tags: array
  marketing_opt_in: boolean
rules:
"""


def rule_file(directory: Path, *rules: str) -> Path:
    """A rule file whose rules alert the team, each ``rules`` entry a YAML flow mapping of
    the rule's keys beside its id and channel."""
    path = directory / "rules.yaml"
    lines = [f"  - {{id: R{n}, channel: internal, {rule}}}\n" for n, rule in enumerate(rules)]
    path.write_text(EVENTS + "".join(lines), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_ruleset(path)
    return caught.value.problems


NEVER_WORKS = {
    "misspelt_property": (
        "trigger: payment_failed, when: event.properties.amont > 5",
        "rule R0: `when: event.properties.amont > 5` uses event.properties.amont, which the "
        "rule file does not declare for payment_failed events: did you mean "
        "event.properties.amount? (or declare it under events: payment_failed: properties:, "
        "or test it first with has(event.properties.amont))",
    ),
    "undeclared_trait": (
        "trigger: payment_failed, when: 'user.nickname == \"Al\"'",
        'rule R0: `when: user.nickname == "Al"` uses user.nickname, which the rule file does '
        "not declare (declare it under traits:, or test it first with has(user.nickname))",
    ),
    # Looking for a text in a list the user holds tests no trait of that name.
    "undeclared_trait_after_a_test_of_a_list": (
        'trigger: payment_failed, when: \'"nickname" in user.tags && user.nickname == "Al"\'',
        'rule R0: `when: "nickname" in user.tags && user.nickname == "Al"` uses user.nickname,'
        " which the rule file does not declare (declare it under traits:, or test it first"
        " with has(user.nickname))",
    ),
    "misspelt_behind_a_false_test": (
        "trigger: payment_failed,"
        " when: 'event.properties.failure_reason == \"CARD\" && event.properties.amont > 5'",
        'rule R0: `when: event.properties.failure_reason == "CARD" && event.properties.amont'
        " > 5` uses event.properties.amont, which",
    ),
    "no_such_event_field": (
        "trigger: payment_failed, when: 'event.time > \"2025\"'",
        'rule R0: `when: event.time > "2025"` uses event.time, which no event has (an event '
        "has id, type, user_id, timestamp and properties)",
    ),
    "not_a_boolean": (
        "trigger: payment_failed, when: event.properties.amount",
        "rule R0: `when: event.properties.amount` gives a double, not true or false, on a "
        "sample payment_failed event with every declared property and trait, where "
        "event.properties.amount is a number: a condition must be a test, such as a comparison",
    ),
    "no_such_overload": (
        "trigger: payment_failed, when: 'event.properties.amount > \"5\"'",
        'rule R0: `when: event.properties.amount > "5"` cannot be evaluated on a '
        "sample payment_failed event with every declared property and trait, where "
        "event.properties.amount is a number: No such overload",
    ),
    "no_such_method_for_the_type": (
        "trigger: payment_failed, when: 'event.properties.attempt_number.startsWith(\"1\")'",
        'rule R0: `when: event.properties.attempt_number.startsWith("1")` cannot be evaluated'
        " on a sample payment_failed event with every declared property and trait, where "
        "event.properties.attempt_number is an integer: Undefined variable or function",
    ),
    "double_arithmetic_on_a_whole_number": (
        "trigger: payment_failed, when: event.properties.amount + 0.5 > 10.0",
        "rule R0: `when: event.properties.amount + 0.5 > 10.0` cannot be evaluated on a "
        "sample payment_failed event whose numbers are whole, as a client may send them (10 rather "
        "than 10.5; CEL keeps int and double apart: convert with double(...)), where "
        "event.properties.amount is a number: No such overload",
    ),
    # `&&` is false when either side is, whatever the other: a sample's attempt number of 1
    # must not hide a side that fails on every event of whole amounts.
    "double_arithmetic_beside_a_false_side": (
        "trigger: payment_failed,"
        " when: event.properties.amount * 1.1 > 1000.0 && event.properties.attempt_number >= 3",
        "rule R0: `when: event.properties.amount * 1.1 > 1000.0 && "
        "event.properties.attempt_number >= 3` cannot be evaluated on a sample payment_failed "
        "event whose numbers are whole, as a client may send them (10 rather than 10.5; CEL keeps "
        "int and double apart: convert with double(...)), where event.properties.amount is a "
        "number, event.properties.attempt_number is an integer: "
        "`event.properties.amount * 1.1 > 1000.0` fails: No such overload",
    ),
    "a_wrong_type_beside_a_true_side": (
        "trigger: payment_failed,"
        " when: '(user.id != \"\" || event.properties.failure_reason > 5) && true'",
        'rule R0: `when: (user.id != "" || event.properties.failure_reason > 5) && true` cannot'
        " be evaluated on a sample payment_failed event with every declared property and trait,"
        " where user.id is a string, event.properties.failure_reason is a string: "
        "`event.properties.failure_reason > 5` fails: No such overload",
    ),
    # A sample has every property, so takes the first branch of a `? :` alone: the other,
    # where every event without the property goes, must not pass unseen.
    "a_wrong_type_in_the_branch_the_sample_does_not_take": (
        "trigger: payment_failed,"
        " when: 'has(event.properties.metadata) ? false : event.properties.failure_reason > 5'",
        "rule R0: `when: has(event.properties.metadata) ? false : "
        "event.properties.failure_reason > 5` cannot be evaluated on a sample payment_failed "
        "event with every declared property and trait, where event.properties.metadata is an "
        "object, event.properties.failure_reason is a string: "
        "`event.properties.failure_reason > 5` fails: No such overload",
    ),
    "double_arithmetic_in_a_nested_choice": (
        "trigger: payment_failed, when: 'has(event.properties.attempt_number) ? true"
        " : (has(event.properties.source) ? false : event.properties.amount * 1.1 > 10.0)'",
        "rule R0: `when: has(event.properties.attempt_number) ? true : "
        "(has(event.properties.source) ? false : event.properties.amount * 1.1 > 10.0)` cannot "
        "be evaluated on a sample payment_failed event whose numbers are whole",
    ),
    # Not a regex whatever the email: every event would skip the rule with this error.
    "a_pattern_that_is_no_regex": (
        "trigger: payment_failed, when: 'user.email.matches(\"[\")'",
        'rule R0: `when: user.email.matches("[")` cannot be evaluated on a sample payment_failed '
        "event with every declared property and trait, where user.email is a string: "
        "Function 'matches' error: '[' not a valid regex",
    ),
    # CEL's error advised checking the spelling of a name cel.dev documents.
    "a_time_zone_for_a_timestamp_getter": (
        "trigger: payment_failed,"
        " when: 'timestamp(event.timestamp).getHours(\"Europe/Lisbon\") >= 22'",
        'rule R0: `when: timestamp(event.timestamp).getHours("Europe/Lisbon") >= 22` cannot be'
        " evaluated on a sample payment_failed event with every declared property and trait,"
        " where event.timestamp is a string: Undefined variable or function: 'getHours': "
        "getHours() is a timestamp's, taking no time zone here "
        "(`timestamp(event.timestamp).getHours()` reads it in UTC)",
    ),
    "a_string_extension": (
        "trigger: payment_failed, when: 'user.email.lowerAscii().endsWith(\"@example.com\")'",
        'rule R0: `when: user.email.lowerAscii().endsWith("@example.com")` cannot be evaluated'
        " on a sample payment_failed event with every declared property and trait, where "
        "user.email is a string: Undefined variable or function: 'lowerAscii': lowerAscii is "
        "one of CEL's extensions, which Herald's CEL does not have (a string has size(), "
        "contains(), startsWith(), endsWith() and matches())",
    ),
    # CEL finds values of different types unequal, without an error: the samples passed.
    "a_literal_of_another_type": (
        "trigger: payment_failed, when: 'event.properties.attempt_number == \"3\"'",
        'rule R0: `when: event.properties.attempt_number == "3"` compares '
        "event.properties.attempt_number, which the rule file declares an integer, with the "
        'string "3": CEL finds values of different types unequal, so `==` is always false '
        "(write it as a number, without quotes)",
    ),
    "a_literal_of_another_type_beside_a_test": (
        "trigger: payment_failed,"
        " when: 'event.properties.amount > 5 && \"true\" == user.marketing_opt_in'",
        'rule R0: `when: event.properties.amount > 5 && "true" == user.marketing_opt_in` '
        "compares user.marketing_opt_in, which the rule file declares a boolean, with the "
        'string "true"',
    ),
    # CEL reads the comparison and skips the comment: so does the check.
    "a_literal_of_another_type_before_a_comment": (
        "trigger: payment_failed, when: 'event.properties.attempt_number == \"3\" // retries'",
        'rule R0: `when: event.properties.attempt_number == "3" // retries` compares '
        "event.properties.attempt_number, which the rule file declares an integer, with the "
        'string "3"',
    ),
    # Each item of a list `in` looks through is compared for equality: a lower-case one
    # never matched an event of the enum's values, and the rule never fired.
    "an_item_of_a_list_outside_the_enum": (
        'trigger: payment_failed, when: \'event.properties.source in ["app", "Web"]\'',
        'rule R0: `when: event.properties.source in ["app", "Web"]` compares '
        'event.properties.source with "Web", which is not one of the values its `enum` '
        'allows ("app", "web"), so `in` never matches it',
    ),
    "an_item_of_a_list_of_another_type": (
        "trigger: payment_failed, when: 'event.properties.attempt_number in [\"3\", 4]'",
        'rule R0: `when: event.properties.attempt_number in ["3", 4]` compares '
        "event.properties.attempt_number, which the rule file declares an integer, with the "
        'string "3": CEL finds values of different types unequal, so `in` never matches it '
        "(write it as a number, without quotes)",
    ),
    # A null sent is no value to a condition, as one left out: `== null` never held, for
    # a client that sent null or one that sent nothing.
    "a_comparison_with_null": (
        "trigger: payment_failed, when: 'event.properties.failure_reason == null'",
        "rule R0: `when: event.properties.failure_reason == null` compares "
        "event.properties.failure_reason with null, which it never holds (a value sent as "
        "null is no value to a condition, as one left out): test "
        "!has(event.properties.failure_reason) instead",
    ),
    # Two slashes in a string are text, not a comment hiding the rest.
    "a_literal_of_another_type_after_slashes_in_a_string": (
        "trigger: payment_failed,"
        ' when: \'user.email != "a//b" && event.properties.attempt_number == "3"\'',
        'rule R0: `when: user.email != "a//b" && event.properties.attempt_number == "3"` '
        "compares event.properties.attempt_number",
    ),
    "a_fraction_for_an_integer": (
        "trigger: payment_failed, when: event.properties.attempt_number == 2.5",
        "rule R0: `when: event.properties.attempt_number == 2.5` compares "
        "event.properties.attempt_number, which the rule file declares an integer, with 2.5, "
        "which no integer equals, so `==` is always false",
    ),
    # Its error is the same on every event, but the samples left it to the events.
    "a_duration_in_days": (
        "trigger: payment_failed, when: 'timestamp(event.timestamp) -"
        ' timestamp("2025-11-01T00:00:00Z") < duration("7d")\'',
        'rule R0: `when: timestamp(event.timestamp) - timestamp("2025-11-01T00:00:00Z") < '
        'duration("7d")` has duration("7d"), which CEL cannot read (Function \'duration\' '
        'error: Parsing Error: Error { input: "d", code: Char }): a duration is in h, m, s, '
        "ms, us or ns: 168h for 7 days",
    ),
    "a_timestamp_without_a_time": (
        "trigger: payment_failed, when: 'timestamp(event.timestamp) > timestamp(\"2025-11-01\")'",
        'rule R0: `when: timestamp(event.timestamp) > timestamp("2025-11-01")` has '
        'timestamp("2025-11-01"), which CEL cannot read (',
    ),
    # A misspelt value of an enum never matches an event, which holds only the enum's.
    "a_value_outside_the_enum": (
        "trigger: payment_failed, when: 'event.properties.source != \"App\"'",
        'rule R0: `when: event.properties.source != "App"` compares event.properties.source '
        'with "App", which is not one of the values its `enum` allows ("app", "web"), so '
        "`!=` is always true",
    ),
    # The condition sees the trigger, a bank link, not the signup that anchors the window.
    "reads_the_anchor_of_an_after_window": (
        "trigger: link_bank_success, after: {event: signup_completed, within: 24h},"
        " when: 'event.properties.plan == \"pro\"'",
        'rule R0: `when: event.properties.plan == "pro"` uses event.properties.plan, which '
        "the rule file does not declare for link_bank_success events",
    ),
}


@pytest.mark.parametrize(("rule", "problem"), list(NEVER_WORKS.values()), ids=list(NEVER_WORKS))
def test_a_condition_that_fails_on_every_event_is_refused_saying_why(
    rule: str, problem: str, tmp_path: Path
) -> None:
    [found] = problems_of(rule_file(tmp_path, rule))

    assert found.startswith(problem), found


def test_a_condition_s_problem_names_its_sample_in_words_that_read_for_any_event_type(
    tmp_path: Path,
) -> None:
    # "on a account_opened event": the article was written for payment_failed.
    path = tmp_path / "rules.yaml"
    path.write_text(
        "events:\n  account_opened: {properties: {bonus: number}}\nrules:\n"
        "  - {id: R0, trigger: account_opened, channel: internal, when: event.properties.bonus}\n",
        encoding="utf-8",
    )

    [problem] = problems_of(path)

    assert "not true or false, on a sample account_opened event with every declared" in problem


WORKS = {
    "undeclared_property_tested_with_has": (
        "trigger: payment_failed,"
        " when: 'has(event.properties.coupon) && event.properties.coupon == \"SPRING\"'"
    ),
    "undeclared_trait_tested_with_has": (
        "trigger: payment_failed, when: 'has(user.nickname) ? user.nickname == \"Al\" : false'"
    ),
    # CEL's membership test on the map tests the key as has() does: it was taken for a
    # read of an undeclared name, and the rule refused.
    "undeclared_property_tested_with_in": (
        "trigger: payment_failed,"
        ' when: \'"coupon" in event.properties && event.properties.coupon == "SPRING"\''
    ),
    "undeclared_trait_tested_with_in": (
        "trigger: payment_failed, when: \"'nickname' in user ? user.nickname == 'Al' : false\""
    ),
    "declared_optional_trait": "trigger: signup_completed, when: user.marketing_opt_in == true",
    "whole_or_fractional_numbers_compared": (
        "trigger: payment_failed,"
        " when: event.properties.amount > 5 && event.properties.amount <= 10.5"
    ),
    "number_converted_for_arithmetic": (
        "trigger: payment_failed, when: double(event.properties.amount) + 0.5 > 10.0"
    ),
    "a_macro_variable": "trigger: payment_failed, when: 'user.tags.exists(t, t == \"vip\")'",
    "a_macro_variable_named_like_a_root": (
        "trigger: payment_failed, when: 'user.tags.exists(user, user == \"vip\")'"
    ),
    "a_key_of_an_object_property": (
        "trigger: payment_failed, when: 'event.properties.metadata.source == \"app\"'"
    ),
    "an_index_some_values_hold": "trigger: payment_failed, when: 'user.tags[0] == \"vip\"'",
    "an_index_guarded_by_a_size": (
        "trigger: payment_failed, when: 'size(user.tags) > 0 && user.tags[0] == \"vip\"'"
    ),
    "a_condition_with_a_choice": (
        "trigger: payment_failed,"
        " when: 'event.properties.attempt_number > 1 ? event.properties.amount > 5 : false'"
    ),
    "a_choice_whose_branch_reads_what_its_test_tests": (
        "trigger: payment_failed, when: 'has(event.properties.metadata) ?"
        ' event.properties.metadata.plan == "pro" : event.properties.source == "web"\''
    ),
    "a_choice_inside_a_call": (
        "trigger: payment_failed, when: 'double(has(event.properties.attempt_number) ?"
        " event.properties.attempt_number : 1) > 2.0'"
    ),
    "a_choice_in_a_string": (
        "trigger: payment_failed, when: 'user.email == \"a ? b : c\" || user.tags.size() > 1'"
    ),
    # A macro called on the map itself reads no property or trait of that name: it was
    # taken for one, `event.properties.exists`, which the file did not declare.
    "a_macro_on_the_properties": (
        "trigger: payment_failed, when: 'event.properties.exists(k, k.startsWith(\"coupon_\"))'"
    ),
    "a_macro_on_the_user": "trigger: payment_failed, when: 'user.all(k, k != \"banned\")'",
    "an_inequality_with_null_that_holds_as_has": (
        "trigger: payment_failed, when: 'event.properties.failure_reason != null'"
    ),
    "a_path_inside_a_string": "trigger: payment_failed, when: 'user.id != \"user.nickname\"'",
    "a_value_of_the_enum": (
        "trigger: payment_failed,"
        ' when: \'event.properties.source == "web" || "app" == event.properties.source\''
    ),
    "items_of_the_enum_in_a_list": (
        'trigger: payment_failed, when: \'event.properties.source in ["app", "web"]\''
    ),
    "a_list_in_a_string": (
        "trigger: payment_failed, when: 'user.email != \"event.properties.source in [1]\"'"
    ),
    "a_whole_number_for_a_number": "trigger: payment_failed, when: event.properties.amount == 5",
    "literals_cel_reads": (
        "trigger: payment_failed, when: 'timestamp(event.timestamp) >"
        ' timestamp("2025-11-01T00:00:00Z") + duration("168h")\''
    ),
    "a_conversion_of_a_value": "trigger: payment_failed, when: 'int(user.email) > 1'",
    "a_literal_compared_with_a_sum": (
        "trigger: payment_failed, when: '1 + event.properties.attempt_number == 2'"
    ),
    "a_comparison_inside_a_string": (
        "trigger: payment_failed, when: 'user.email != \"x && user.tags == 1\"'"
    ),
    "an_undeclared_name_in_a_comment": (
        "trigger: payment_failed, when: 'event.properties.amount > 5 // not user.nickname'"
    ),
    "a_comparison_in_a_comment": (
        "trigger: payment_failed,"
        " when: 'event.properties.amount > 5 // was (event.properties.source == \"App\")'"
    ),
    "the_trigger_of_an_after_window": (
        "trigger: signup_completed, after: {event: link_bank_success, within: 24h},"
        " when: 'event.properties.plan == \"pro\"'"
    ),
}


@pytest.mark.parametrize("rule", list(WORKS.values()), ids=list(WORKS))
def test_a_condition_that_can_hold_is_accepted(rule: str, tmp_path: Path) -> None:
    ruleset = load_ruleset(rule_file(tmp_path, rule))

    assert [rule.id for rule in ruleset.rules] == ["R0"]


def test_rules_check_lists_a_broken_condition_beside_the_file_s_other_problems(
    tmp_path: Path,
) -> None:
    path = rule_file(
        tmp_path,
        "trigger: payment_failed, when: event.properties.amont > 5",
        "trigger: payment_failed, when: event.properties.amount",
        "trigger: payment_failed, limit: sometimes",
    )

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env={"COLUMNS": "1000"})

    assert result.exit_code == 1
    assert f"{path}: 3 problem(s)" in result.output
    assert (
        "rule R0: `when: event.properties.amont > 5` uses event.properties.amont" in result.output
    )
    assert "rule R1: `when: event.properties.amount` gives a double" in result.output
    assert "rule R2: unknown limit 'sometimes'" in result.output
