"""A rule's templates checked at load: where they are, their parts and encoding, the names
they read, and the expressions that always fail or only fail on some events."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.rules.loader import load_ruleset
from tests.support.rule_file_writing import (
    GOOD_RULE,
    HELLO,
    checked_problems,
    payment_email_rule_file,
    problems_of,
    write_rule_file,
)


def test_templates_dir_read_from_the_file_is_beside_it(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE)
    (tmp_path / "templates").rename(tmp_path / "messages")
    path.write_text(path.read_text(encoding="utf-8") + "templates_dir: messages\n")

    assert load_ruleset(path).rules[0].template == "hello"


@pytest.mark.parametrize("named", ["[messages]", "5", "''", ""])
def test_a_templates_dir_that_is_no_folder_name_is_the_one_problem(
    named: str, tmp_path: Path
) -> None:
    # Not looked in as a folder called "['messages']", nor left to the default unsaid.
    path = write_rule_file(tmp_path, GOOD_RULE)
    path.write_text(path.read_text(encoding="utf-8") + f"templates_dir: {named}\n")

    [problem] = problems_of(path)

    assert problem.startswith("templates_dir: must name the templates' folder, relative to")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            '{{ event.properties.amount ~ "" + 1 }}',
            'template failed/body.txt: TypeError: can only concatenate str (not "int") to str',
        ),
        (
            '{% include "../rules.yaml" %}',
            "template failed/body.txt: a template cannot include, import or extend another "
            "file: each part stands alone",
        ),
        (
            "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}",
            "template failed/body.txt: RecursionError: maximum recursion depth exceeded",
        ),
        (
            # A trait declared a string, formatted as a number: every event failed.
            'Total: {{ "{:,.2f}".format(user.first_name) }}',
            "template failed/body.txt: TypeError: Unknown format code 'f' for object of type 'str'",
        ),
    ],
    ids=["types", "include", "recursion", "format_spec"],
)
def test_a_template_raising_an_error_on_its_declared_types_is_a_problem_not_a_traceback(
    body: str, problem: str, tmp_path: Path
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: FAILED, trigger: payment_failed, channel: email, category: transactional,"
        " template: failed}\n",
        {"failed": {"subject.txt": "Payment failed", "body.txt": body}},
    )

    assert checked_problems(path) == [f"rule FAILED: {problem}"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", id="too deep for jinja"),
        # Jinja reads it, and writes Python code nested deeper than Python's parser takes.
        pytest.param("{{ " + " or ".join(["user.first_name"] * 200) + " }}", id="for python"),
    ],
)
def test_a_template_nested_too_deeply_to_compile_is_a_problem_not_a_traceback(
    tmp_path: Path, body: str
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: DEEP, trigger: payment_failed, channel: email, category: transactional,"
        " template: deep}\n",
        {"deep": {"subject.txt": "Payment failed", "body.txt": body}},
    )

    assert checked_problems(path) == [
        "rule DEEP: template deep/body.txt: nested too deeply for Jinja to compile"
    ]


@pytest.mark.parametrize(
    ("parts", "problem"),
    [
        (
            {
                "subject.txt": "Hi",
                "body.txt": "{% for i in range(20) %}{{ 'x' * 60000 }}{% endfor %}",
            },
            "template long/body.txt: the message would be more than 1,000,000 characters",
        ),
        (
            {
                "subject.txt": "Hi",
                "body.txt": "{{ 'x' * 90000 }}" * 7,
                "body.html": "{{ 'x' * 90000 }}" * 7,
            },
            "template long: the message would be more than 1,000,000 characters",
        ),
        (
            {"subject.txt": "Hi", "body.txt": "{% for i in range(200000) %}.{% endfor %}"},
            "template long/body.txt: OverflowError: Range too big. The sandbox blocks ranges"
            " larger than MAX_RANGE (100000).",
        ),
    ],
    ids=["one_part", "the_parts_together", "range"],
)
def test_a_template_past_a_render_bound_whatever_the_values_is_a_problem(
    parts: dict[str, str], problem: str, tmp_path: Path
) -> None:
    # Each event would skip the rule with this reason: the check said the file was fine.
    path = write_rule_file(
        tmp_path,
        "  - {id: LONG, trigger: payment_failed, channel: email, category: transactional,"
        " template: long}\n",
        {"long": parts},
    )

    assert checked_problems(path) == [f"rule LONG: {problem}"]


@pytest.mark.parametrize(
    "body",
    [
        "{{ 100 // (event.properties.amount - 1.5) }}",
        "{{ range(event.properties.amount) | list }}",
        '{{ "{:d}".format(event.properties.amount) }}',
    ],
    ids=["zero_on_the_sample", "whole_numbers_only", "whole_numbers_formatted"],
)
def test_a_template_failing_only_on_some_values_is_left_to_the_events(
    body: str, tmp_path: Path
) -> None:
    # The sample's amount is 1.5 (and 1): another amount renders, so the rule loads.
    path = write_rule_file(
        tmp_path,
        "  - {id: FAILED, trigger: payment_failed, channel: email, category: transactional,"
        " template: failed}\n",
        {"failed": {"subject.txt": "Payment failed", "body.txt": body}},
    )

    assert [rule.id for rule in load_ruleset(path).rules] == ["FAILED"]


@pytest.mark.parametrize(
    ("parts", "misnamed", "part"),
    [
        # The email went without its HTML, and the check said nothing.
        (
            {"subject.txt": "Hi", "body.txt": "Hello", "body.htm": "<p>Hello</p>"},
            "body.htm",
            "body.html",
        ),
        # Read on a disk that ignores case, refused as "needs subject.txt and body.txt" where
        # one does not: which file was wrong was left to find.
        ({"subject.txt": "Hi", "Body.txt": "Hello"}, "Body.txt", "body.txt"),
    ],
)
def test_a_template_file_named_as_a_part_misspelt_is_refused_naming_the_part(
    parts: dict[str, str], misnamed: str, part: str, tmp_path: Path
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: NOTE, trigger: signup_completed, channel: email, category: transactional,"
        " template: note}\n",
        {"note": parts},
    )

    assert problems_of(path) == [
        f"rule NOTE: template note: {misnamed} is not read (a template's parts are "
        f"subject.txt, body.txt and body.html): rename it {part}"
    ]


def test_a_misnamed_part_does_not_stop_the_check_of_the_parts_there(tmp_path: Path) -> None:
    # The check stopped at the misnamed file: the body's typo was heard of once renamed.
    parts = {
        "subject.txt": "Hi",
        "body.txt": "{{ event.properties.amout }}",
        "body.htm": "<p>Hello</p>",
    }
    path = write_rule_file(
        tmp_path,
        "  - {id: NOTE, trigger: payment_failed, channel: email, category: transactional,"
        " template: note}\n",
        {"note": parts},
    )

    assert checked_problems(path) == [
        "rule NOTE: template note: body.htm is not read (a template's parts are subject.txt,"
        " body.txt and body.html): rename it body.html",
        "rule NOTE: template note/body.txt uses event.properties.amout, which the rule file"
        " does not declare for payment_failed events: did you mean event.properties.amount?"
        " (or declare it under events: payment_failed: properties:)",
    ]


@pytest.mark.parametrize("misnamed", ["subject.text", "SUBJECT.TXT"])
def test_a_misnamed_required_part_is_named_beside_the_problems_of_the_other_parts(
    misnamed: str, tmp_path: Path
) -> None:
    # Not said to lack subject.txt as well: renaming the file is the one fix.
    parts = {misnamed: "Hi", "body.txt": "Hello {{ user.first_name }", "body.html": "{{ x"}
    path = write_rule_file(
        tmp_path,
        "  - {id: NOTE, trigger: signup_completed, channel: email, category: transactional,"
        " template: note}\n",
        {"note": parts},
    )

    assert checked_problems(path) == [
        f"rule NOTE: template note: {misnamed} is not read (a template's parts are "
        "subject.txt, body.txt and body.html): rename it subject.txt",
        "rule NOTE: template note/body.txt line 1: unexpected '}'",
        "rule NOTE: template note/body.html line 1: unexpected end of template, expected 'end"
        " of print statement'.",
    ]


def test_a_missing_part_is_named_beside_the_problems_of_the_parts_there(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: NOTE, trigger: signup_completed, channel: email, category: transactional,"
        " template: note}\n",
        {"note": {"body.txt": "Hello {{ user.first_name }"}},
    )

    assert checked_problems(path) == [
        "rule NOTE: template 'note' needs subject.txt and body.txt",
        "rule NOTE: template note/body.txt line 1: unexpected '}'",
    ]


def test_every_undeclared_name_of_a_template_is_listed_in_one_check(tmp_path: Path) -> None:
    # Only the first was: an author with two typos needed two runs to learn of both.
    typos = {"subject.txt": "Hi {{ user.frist_name }}", "body.txt": "{{ event.properties.amout }}"}
    path = write_rule_file(
        tmp_path,
        "  - {id: TYPOS, trigger: payment_failed, channel: email, category: transactional,"
        " template: typos}\n",
        {"typos": typos},
    )

    assert problems_of(path) == [
        "rule TYPOS: template typos/subject.txt uses user.frist_name, which the rule file does"
        " not declare: did you mean user.first_name? (or declare it under traits:)",
        "rule TYPOS: template typos/body.txt uses event.properties.amout, which the rule file"
        " does not declare for payment_failed events: did you mean event.properties.amount?"
        " (or declare it under events: payment_failed: properties:)",
    ]


def test_a_rule_s_template_problem_is_listed_beside_its_other_problems(tmp_path: Path) -> None:
    rule = (
        "  - {id: TWICE, trigger: signup_completed, channel: email, category: transactional,"
        " when: 'user.plan ==', template: no_such_template}\n"
    )
    path = write_rule_file(tmp_path, rule)

    problems = problems_of(path)

    assert [problem.split(":")[0] for problem in problems] == ["rule TWICE", "rule TWICE"]
    assert "`when: user.plan ==` does not compile" in problems[0]
    assert "template 'no_such_template' not found" in problems[1]


def test_a_template_not_saved_as_utf8_is_reported_with_its_rule(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE)
    (tmp_path / "templates" / "hello" / "body.txt").write_bytes(b"Ol\xe1 {{ user.email }}")

    assert problems_of(path) == [
        "rule GOOD: template hello/body.txt is not UTF-8 text (byte 0xe1 on line 1): "
        "save it as UTF-8"
    ]


def test_a_part_not_saved_as_utf8_is_named_beside_the_problems_of_the_others(
    tmp_path: Path,
) -> None:
    path = write_rule_file(
        tmp_path, GOOD_RULE, {"hello": {"subject.txt": "Hello {{ user.first_name }"}}
    )
    (tmp_path / "templates" / "hello" / "body.txt").write_bytes(b"Ol\xe1")

    assert problems_of(path) == [
        "rule GOOD: template hello/body.txt is not UTF-8 text (byte 0xe1 on line 1): "
        "save it as UTF-8",
        "rule GOOD: template hello/subject.txt line 1: unexpected '}'",
    ]


def test_a_template_saved_with_a_byte_order_mark_does_not_send_it(tmp_path: Path) -> None:
    # Some editors start a UTF-8 file with U+FEFF: invisible, it began every subject.
    path = write_rule_file(tmp_path, GOOD_RULE)
    for part, text in HELLO.items():
        (tmp_path / "templates" / "hello" / part).write_bytes(b"\xef\xbb\xbf" + text.encode())

    rendered = load_ruleset(path).templates.render(
        "hello", {"user": {"first_name": "Ana", "email": "a@x.io"}}
    )

    assert (rendered.subject, rendered.body) == ("Hello Ana", "Welcome, a@x.io.")


@pytest.mark.parametrize(
    "body",
    [
        "Plan: {{ event.properties.meta.plan }}",
        "First line: {{ event.properties.lines[0] }}",
        "Last line: {{ event.properties.lines[-1] | upper }}",
        "{{ event.properties.meta.plan.name }} {{ event.properties.meta['tier'] }}",
        # Filters that pick an item: refused as "No first item, sequence was empty".
        "First line: {{ event.properties.lines | first }}, {{ event.properties.lines | last }}",
        "Top: {{ event.properties.lines | max }} {{ event.properties.lines | min | upper }}",
        "Pick: {{ (event.properties.lines | first).name }} {{ event.properties.lines | random }}",
        # The item used as a client's may be: refused as "No first item" too.
        "{% set lines = event.properties.lines %}"
        "{{ (lines | first) + 1 }} {{ 2 * (lines | last) }}",
        "{% set lines = event.properties.lines %}{% if (lines | max) > 3 %}{{ -(lines | min) }}"
        "{% endif %} {{ (lines | random) | int + 1 }} {{ (lines | first).upper() }}",
    ],
)
def test_a_template_may_read_inside_an_object_or_array_property(body: str, tmp_path: Path) -> None:
    # The keys of an object and the items of an array are the client's: an event without
    # them renders them empty, as it does an absent property, and the file cannot declare
    # them. The check's empty sample lacked them, and the file was refused.
    path = payment_email_rule_file(
        tmp_path, {"subject.txt": "Order", "body.txt": body}, "meta: object", "lines: array"
    )

    assert [rule.id for rule in load_ruleset(path).rules] == ["ORDER"]


def test_a_template_using_a_picked_item_as_no_item_can_be_used_is_refused(
    tmp_path: Path,
) -> None:
    body = "{{ (event.properties.lines | first) - 'a' }}"
    path = payment_email_rule_file(tmp_path, {"subject.txt": "s", "body.txt": body}, "lines: array")

    assert problems_of(path) == [
        "rule ORDER: template order/body.txt: TypeError: no item of a list, of any type, works "
        "here: unsupported operand type(s) for -: 'int' and 'str'"
    ]


def test_a_template_picking_an_item_still_has_a_failing_expression_beside_it_refused(
    tmp_path: Path,
) -> None:
    body = "{{ (event.properties.lines | first) + 1 }} {{ event.properties.amount + 'a' }}"
    path = payment_email_rule_file(tmp_path, {"subject.txt": "s", "body.txt": body}, "lines: array")

    [problem] = problems_of(path)

    assert problem.startswith("rule ORDER: template order/body.txt: TypeError: unsupported operand")


def test_a_template_reading_inside_an_object_still_has_its_undeclared_names_listed(
    tmp_path: Path,
) -> None:
    typos = {"subject.txt": "{{ event.properties.meta.plan }}", "body.txt": "{{ user.frist }}"}
    path = payment_email_rule_file(tmp_path, typos, "meta: object", rule="TYPO")

    assert problems_of(path) == [
        "rule TYPO: template typo/body.txt uses user.frist, which the rule file does not"
        " declare (declare it under traits:)"
    ]


def test_a_template_picking_an_item_still_has_its_undeclared_names_listed(
    tmp_path: Path,
) -> None:
    parts = {"subject.txt": "{{ event.properties.lines | first }}", "body.txt": "{{ user.frist }}"}
    path = payment_email_rule_file(tmp_path, parts, "lines: array", rule="TYPO")

    assert problems_of(path) == [
        "rule TYPO: template typo/body.txt uses user.frist, which the rule file does not"
        " declare (declare it under traits:)"
    ]


def test_a_template_reading_inside_an_object_still_has_a_part_that_always_fails_listed(
    tmp_path: Path,
) -> None:
    # Reading inside the object made the check stop at the first failure, whichever part
    # it was in: the file loaded, and every event then skipped the rule.
    parts = {"subject.txt": "{{ event.properties.meta.plan }}", "body.txt": "{{ 1 + 'a' }}"}
    path = payment_email_rule_file(tmp_path, parts, "meta: object", rule="BROKEN")

    assert problems_of(path) == [
        "rule BROKEN: template broken/body.txt: TypeError: unsupported operand type(s) for +:"
        " 'int' and 'str'"
    ]


def test_a_part_failing_only_on_what_the_client_sends_inside_an_object_is_left_to_events(
    tmp_path: Path,
) -> None:
    parts = {
        "subject.txt": "{{ event.properties.meta.count }}",
        "body.txt": "{{ event.properties.meta.count + 1 }} items",
    }
    path = payment_email_rule_file(tmp_path, parts, "meta: object")

    assert [rule.id for rule in load_ruleset(path).rules] == ["ORDER"]


def test_missing_templates_are_listed_in_the_order_of_their_rules(tmp_path: Path) -> None:
    # They were listed by the template's name: R1, R3, R2 for one, two, three.
    rules = "".join(
        f"  - {{id: {rule}, trigger: signup_completed, channel: email, category: transactional,"
        f" template: {template}}}\n"
        for rule, template in [("R1", "one"), ("R2", "two"), ("R3", "three")]
    )
    path = write_rule_file(tmp_path, rules)

    assert [problem.split(":")[0] for problem in problems_of(path)] == [
        "rule R1",
        "rule R2",
        "rule R3",
    ]


@pytest.mark.parametrize(
    ("named", "folder"), [("welcom", "welcome"), ("Welcome", "welcome"), ("welcome", "Welcome")]
)
def test_a_template_not_found_names_the_folder_it_looks_like(
    named: str, folder: str, tmp_path: Path
) -> None:
    # A misspelt name, or one in another case (which a case-insensitive disk finds on the
    # author's machine, and a server's does not), said only that there was no folder.
    path = write_rule_file(
        tmp_path,
        "  - {id: HI, trigger: signup_completed, channel: email, category: transactional,"
        f" template: {named}}}\n",
        {folder: HELLO},
    )

    [problem] = problems_of(path)
    assert problem.startswith(f"rule HI: template '{named}' not found (no folder ")
    assert problem.endswith(f"/{named}): did you mean '{folder}'?")


def test_a_template_not_found_like_no_folder_gets_no_guess(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: HI, trigger: signup_completed, channel: email, category: transactional,"
        " template: farewell}\n",
    )

    [problem] = problems_of(path)
    assert problem.endswith("/farewell)")


@pytest.mark.parametrize(
    "written",
    ["templates/hello", "./templates/hello/", "hello/body.txt", "templates/hello/subject.txt"],
)
def test_a_template_given_as_a_path_is_refused_saying_its_name(
    written: str, tmp_path: Path
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: HI, trigger: signup_completed, channel: email, category: transactional,"
        f" template: '{written}'}}\n",
    )

    assert problems_of(path) == [
        f"rule HI: `template: {written!r}` must be the name of a folder in templates/ (or in the"
        " folder templates_dir names), not a path: write `template: hello`"
    ]
