"""The events and traits a rule file declares: names, property and trait types, and a
broken declaration reported once, not as every read of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.rules.loader import RuleFileError, load_ruleset
from tests.support.rule_file_writing import (
    GOOD_RULE,
    checked_problems,
    problems_of,
    redeclare,
    write_rule_file,
)


def test_an_events_section_declaring_none_says_so(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("events: {}\nrules: []\n", encoding="utf-8")

    assert problems_of(path) == [
        "`events` must map each event type to its definition, and declares none (e.g. "
        "`events: {signup_completed: {}}`)"
    ]


def test_rule_ids_and_event_type_names_must_be_short_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "events:\n"
        "  'signup completed!': {}\n"
        "  signup_completed: {}\n"
        "rules:\n"
        "  - id: 'WELCOME:EMAIL'\n"
        "    trigger: signup_completed\n"
        "    channel: internal\n"
    )
    with pytest.raises(RuleFileError) as caught:
        load_ruleset(path)
    problems = " | ".join(caught.value.problems)
    assert "event type 'signup completed!'" in problems
    assert "rule WELCOME:EMAIL: the id must be 1-64 letters" in problems


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        (
            "  signup_completed:\n    properties:\n      plan: {type: string, minimum: 3}\n",
            "event signup_completed: property plan: `minimum` applies to numbers, not to string",
        ),
        (
            "  signup_completed:\n    properties:\n      amount: {type: number, maximum: lots}\n",
            "event signup_completed: property amount: `maximum` must be a number, got 'lots'",
        ),
        (
            "  signup_completed:\n    properties: [amount]\n",
            "event signup_completed: `properties` must map each property to its type, got "
            "['amount']",
        ),
        ("  signup_completed: [one, two]\n", "event signup_completed: must be a mapping"),
        (
            "  signup_completed:\n    propertes:\n      amount: {type: number}\n",
            "event signup_completed: unknown key `propertes`: did you mean `properties`? "
            "(known: description, properties)",
        ),
        (
            "  signup_completed:\n    properties:\n      amount: {type: number, minimun: 0}\n",
            "event signup_completed: property amount: unknown key `minimun`: did you mean "
            "`minimum`?",
        ),
        (
            "  signup_completed:\n    properties:\n"
            "      amount: {type: number, min: 0, requried: true}\n",
            "event signup_completed: property amount: unknown key `min`; unknown key "
            "`requried`: did you mean `required`? (known: type, required, minimum, maximum, "
            "enum)",
        ),
        (
            "  signup_completed:\n    properties:\n      plan: {type: string, required: 'false'}\n",
            "event signup_completed: property plan: `required` must be true or false, got 'false'",
        ),
        (
            "  signup_completed:\n    properties:\n"
            "      amount: {type: number, minimum: 10, maximum: 1}\n",
            "event signup_completed: property amount: `minimum` 10 is above `maximum` 1",
        ),
        (
            "  signup_completed:\n    properties:\n      answer: {type: string, enum: [yes, no]}\n",
            "event signup_completed: property answer: `enum` value True is not of type string"
            " (YAML reads yes, no, on, off, true and false unquoted as true or false: quote"
            ' each value as clients send it, e.g. "yes")',
        ),
        (
            "  signup_completed:\n    properties:\n"
            "      zip: {type: string, enum: [10115, '75008']}\n",
            "event signup_completed: property zip: `enum` value 10115 is not of type string"
            " (YAML reads digits unquoted as a number: quote each value as clients send it)",
        ),
        (
            "  signup_completed:\n    properties:\n      amount: {type: number, maximum: 1e6}\n",
            "event signup_completed: property amount: `maximum` must be a number, got '1e6' "
            "(YAML reads a number like 1e9 as text: write it in full, or as 1.0e+9)",
        ),
        (
            "  signup_completed:\n    properties:\n"
            "      seats: {type: integer, minimum: 1, enum: [0, 5]}\n",
            "event signup_completed: property seats: `enum` value 0 is outside "
            "`minimum`/`maximum`: it could never be sent",
        ),
        (
            "  signup_completed:\n    properties:\n      plan: {type: string, enum: []}\n",
            "event signup_completed: property plan: `enum` is empty: no value could be sent",
        ),
        # JSON has no infinity or NaN: GET /rules answered 500 for a file that held one.
        (
            "  signup_completed:\n    properties:\n      amount: {type: number, maximum: .inf}\n",
            "event signup_completed: property amount: `maximum` must be a finite number, got inf "
            "(leave it out for no bound)",
        ),
        (
            "  signup_completed:\n    properties:\n      amount: {type: number, minimum: -.inf}\n",
            "event signup_completed: property amount: `minimum` must be a finite number, got -inf",
        ),
        (
            "  signup_completed:\n    properties:\n      amount: {type: number, enum: [1, .nan]}\n",
            "event signup_completed: property amount: `enum` value nan is not a JSON value (YAML "
            "also reads dates, binary data, keys that are not text, NaN and infinities): it "
            "could never be sent",
        ),
        (
            "  signup_completed:\n    properties:\n      sizes: {type: array, enum: [[1, .inf]]}\n",
            "event signup_completed: property sizes: `enum` value [1, inf] is not a JSON value",
        ),
        (
            "  signup_completed:\n    properties:\n"
            "      key: {type: array, enum: [[!!binary gICA]]}\n",
            "event signup_completed: property key: `enum` value [b'\\x80\\x80\\x80'] is not a JSON "
            "value",
        ),
        (
            "  signup_completed:\n    properties:\n"
            "      plan: {type: object, enum: [{since: 2025-01-01}]}\n",
            "event signup_completed: property plan: `enum` value {'since': datetime.date(2025, 1, "
            "1)} is not a JSON value",
        ),
        (
            "  signup_completed:\n    properties:\n      plan: {type: object, enum: [{1: one}]}\n",
            "event signup_completed: property plan: `enum` value {1: 'one'} is not a JSON value",
        ),
    ],
)
def test_an_event_type_that_would_fail_at_intake_is_refused_at_load(
    events: str, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f"events:\n{events}rules: []\n", encoding="utf-8")

    assert [p for p in problems_of(path) if p.startswith(problem)], problems_of(path)


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        (
            "{type: nummber, required: true}",
            "event payment_failed: property amount: `type` must be one of string, number, "
            "integer, boolean, object, array, got 'nummber': did you mean `number`?",
        ),
        (
            "{type: number, minimum: none}",
            "event payment_failed: property amount: `minimum` must be a number, got 'none'",
        ),
    ],
)
def test_rules_check_reports_a_broken_property_declaration_not_its_reads_as_undeclared(
    declaration: str, problem: str, tmp_path: Path
) -> None:
    # The property's condition and template are right: only its declaration is wrong, and
    # that is the one problem to fix, not a read of a property "the file does not declare".
    path = write_rule_file(
        tmp_path,
        "  - id: FAILED\n"
        "    trigger: payment_failed\n"
        "    when: event.properties.amount > 100.0\n"
        "    channel: email\n"
        "    category: transactional\n"
        "    template: failed\n",
        {
            "failed": {
                "subject.txt": "Payment of {{ event.properties.amount }} failed",
                "body.txt": "Twice: {{ event.properties.amount * 2 }}",
            }
        },
    )
    redeclare(path, "{type: number, required: true}", declaration)

    assert checked_problems(path) == [problem]


ONE_OF_THE_TYPES = "one of string, number, integer, boolean, object, array"


@pytest.mark.parametrize(
    ("declared", "meant"),
    [
        ("{type: String, required: true}", "string"),
        ("{type: Integer}", "integer"),
        ("{type: nummber}", "number"),
        ("{type: int}", "integer"),
        ("{type: bool}", "boolean"),
        ("float", "number"),
        ("{type: dict}", "object"),
    ],
)
def test_a_property_type_spelt_near_a_known_one_names_it(
    declared: str, meant: str, tmp_path: Path
) -> None:
    # `type: String` was said to be none of the types, with `string` among them to find.
    path = write_rule_file(tmp_path, "  []\n")
    redeclare(path, "{type: number, required: true}", declared)
    given = declared.strip("{}").split(",")[0].removeprefix("type: ")

    assert checked_problems(path) == [
        f"event payment_failed: property amount: `type` must be {ONE_OF_THE_TYPES}, "
        f"got {given!r}: did you mean `{meant}`?"
    ]


@pytest.mark.parametrize(("given", "meant"), [("String", "string"), ("str", "string")])
def test_a_trait_type_spelt_near_a_known_one_names_it(
    given: str, meant: str, tmp_path: Path
) -> None:
    path = write_rule_file(tmp_path, "  []\n")
    redeclare(path, "first_name: string", f"first_name: {given}")

    assert checked_problems(path) == [
        f"trait first_name: the type must be {ONE_OF_THE_TYPES}, got {given!r}:"
        f" did you mean `{meant}`?"
    ]


def test_a_broken_property_declaration_leaves_the_rule_s_other_mistakes_listed(
    tmp_path: Path,
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - id: FAILED\n"
        "    trigger: payment_failed\n"
        "    when: event.properties.amount > 100.0 && user.plann == 'pro'\n"
        "    channel: internal\n",
    )
    redeclare(path, "type: number,", "type: nummber,")

    problems = problems_of(path)

    assert [p.split(":")[0] for p in problems] == ["event payment_failed", "rule FAILED"]
    assert "uses user.plann, which the rule file does not declare" in problems[1]
    assert "event.properties.amount" not in problems[1].partition(" uses ")[2]


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        (
            "email: [string]",
            "trait email: the type must be one of string, number, integer, boolean, object, "
            "array, got ['string']",
        ),
        (
            "email: strng",
            "trait email: the type must be one of string, number, integer, boolean, object, "
            "array, got 'strng': did you mean `string`?",
        ),
        (
            "email:",
            "trait email: needs a type: one of string, number, integer, boolean, object, array",
        ),
        # As a property is declared: refused showing Python's spelling of the mapping.
        (
            "email: {type: string}",
            "trait email: a trait takes its type alone: write `email: string`",
        ),
        (
            "email: integer",
            "trait email: Herald reads it as a string (the email channel's recipient): declare "
            "`email: string`",
        ),
    ],
)
def test_rules_check_reports_a_broken_trait_declaration_not_its_reads_as_undeclared(
    declaration: str, problem: str, tmp_path: Path
) -> None:
    # The condition and the template (HELLO's body) reading the trait are right: only its
    # declaration is wrong, and that is the one problem to fix.
    path = write_rule_file(
        tmp_path,
        "  - id: WELCOME\n"
        "    trigger: signup_completed\n"
        "    when: user.email.endsWith('@example.com')\n"
        "    channel: email\n"
        "    category: transactional\n"
        "    template: hello\n",
    )
    redeclare(path, "email: string", declaration)

    assert checked_problems(path) == [problem]


@pytest.mark.parametrize(
    ("declaration", "read_as"),
    [
        ("phone: integer", "a string"),
        ("marketing_opt_in: string", "a boolean"),
        ("timezone: object", "a string"),
        ("unsubscribed: string", "an array"),
    ],
)
def test_a_trait_herald_reads_itself_must_be_declared_of_the_type_it_reads(
    declaration: str, read_as: str, tmp_path: Path
) -> None:
    # `marketing_opt_in: string` would pass `user.marketing_opt_in == "yes"`, a condition
    # no consenting user meets: consent asks for true.
    path = write_rule_file(tmp_path, GOOD_RULE)
    redeclare(path, "first_name: string", f"first_name: string\n  {declaration}")

    [problem] = problems_of(path)

    name = declaration.split(":")[0]
    assert problem.startswith(f"trait {name}: Herald reads it as {read_as} (")


@pytest.mark.parametrize("name", ["Email", "PHONE", "Marketing_Opt_In"])
def test_a_trait_herald_reads_itself_declared_in_another_case_is_refused(
    name: str, tmp_path: Path
) -> None:
    """Traits are case-sensitive: declared and sent as `Email`, no message would have a
    recipient, and every email rule would be skipped for the want of one."""
    path = write_rule_file(tmp_path, GOOD_RULE)
    redeclare(path, "first_name: string", f"first_name: string\n  {name}: string")

    [problem] = problems_of(path)

    assert problem.startswith(
        f"trait {name}: Herald reads the trait `{name.lower()}` ("
    ) and problem.endswith(f"in lower case: declare `{name.lower()}`, and have clients send it so")


def test_a_trait_named_id_is_refused_as_user_id_is_the_user_s_id(tmp_path: Path) -> None:
    # Checked as an integer, `user.id > 5` would pass and then fail on every event, whose
    # user.id is the user's id.
    path = write_rule_file(
        tmp_path, "  - {id: BIG, trigger: signup_completed, channel: internal, when: user.id > 5}\n"
    )
    redeclare(path, "first_name: string", "first_name: string\n  id: integer")

    assert problems_of(path) == [
        "trait id: `user.id` is the user's id (the event's user_id), not a trait: name it otherwise"
    ]


def test_a_broken_trait_declaration_leaves_the_rule_s_other_mistakes_listed(
    tmp_path: Path,
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - id: WELCOME\n"
        "    trigger: signup_completed\n"
        "    when: user.email != '' && user.plann == 'pro'\n"
        "    channel: internal\n",
    )
    redeclare(path, "email: string", "email: strng")

    problems = problems_of(path)

    assert [p.split(":")[0] for p in problems] == ["trait email", "rule WELCOME"]
    assert "uses user.plann, which the rule file does not declare" in problems[1]
    assert "user.email" not in problems[1].partition(" uses ")[2]


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        (
            "  payment_failed: [amount, currency]\n",
            "event payment_failed: must be a mapping with an optional `description` and "
            "`properties` mapping each property to its type (e.g. `properties: {amount: "
            "number}`), got ['amount', 'currency']",
        ),
        (
            "  payment_failed:\n    properties: [amount, currency]\n",
            "event payment_failed: `properties` must map each property to its type, got "
            "['amount', 'currency']",
        ),
    ],
)
def test_rules_check_reports_a_broken_event_type_once_not_each_rule_on_it_as_undeclared(
    declaration: str, problem: str, tmp_path: Path
) -> None:
    # The rules triggered by the type, or anchored on it, name it rightly: only its
    # declaration is wrong, and that is the one problem to fix.
    path = write_rule_file(
        tmp_path,
        "  - {id: FAILED, trigger: payment_failed, channel: internal}\n"
        "  - id: FAILED_EMAIL\n"
        "    trigger: payment_failed\n"
        "    when: event.properties.amount > 100.0\n"
        "    channel: email\n"
        "    category: transactional\n"
        "    template: hello\n"
        "  - id: AFTER_FAILURE\n"
        "    trigger: signup_completed\n"
        "    after: {event: payment_failed, within: 24h}\n"
        "    channel: internal\n",
    )
    declared = "  payment_failed:\n    properties:\n      amount: {type: number, required: true}\n"
    redeclare(path, declared, declaration)

    assert checked_problems(path) == [problem]


def test_traits_and_templates_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: ODD, trigger: signup_completed, channel: email, category: transactional,"
        " template: [a, b]}\n",
    )
    redeclare(path, "  email: string", "  email: [string]")

    problems = problems_of(path)

    assert "trait email: the type must be one of" in " ".join(problems)
    assert (
        "rule ODD: `template: ['a', 'b']` must be the name of a folder in templates/ (or in the"
        " folder templates_dir names), not a path"
    ) in problems


def test_traits_listed_without_types_are_one_problem_not_every_read_of_them(
    tmp_path: Path,
) -> None:
    # Each of the template's and the condition's reads was said again as undeclared,
    # advising to declare under traits: the names the author had just listed there.
    path = write_rule_file(
        tmp_path,
        "  - id: WELCOME\n"
        "    trigger: signup_completed\n"
        "    when: user.email.endsWith('@example.com')\n"
        "    channel: email\n"
        "    category: transactional\n"
        "    template: hello\n",
    )
    redeclare(path, "  email: string\n  first_name: string", "  - email\n  - first_name")

    assert checked_problems(path) == [
        "`traits` must map each trait to its type, not list the names: write `email: string`"
        " rather than `- email`"
    ]
