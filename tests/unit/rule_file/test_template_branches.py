"""A template's names checked in every branch, not only in those a sample's values take:
an undeclared name in an `else`, under an `if not`, or in the body of a loop over a list
the sample holds empty would otherwise pass the check and print nothing in every message
that takes that branch. And a misspelt list looped over is that one problem, not also one
about its items."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.rules.loader import load_ruleset
from tests.support.rule_file_writing import payment_email_rule_file, problems_of

NICKNAME = (
    "rule ORDER: template order/body.txt uses user.nickname, which the rule file does not"
    " declare (declare it under traits:)"
)


@pytest.mark.parametrize(
    "body",
    [
        "{% if user.first_name %}Hi {{ user.first_name }}{% else %}Hi {{ user.nickname }}"
        "{% endif %}",
        "{% if not user.first_name %}Hi {{ user.nickname }}{% endif %}",
        "{% for line in event.properties.lines %}{{ line }} for {{ user.nickname }}{% endfor %}",
        "{% if event.properties.lines %}{% for i in user.nickname %}{{ i }}{% endfor %}{% endif %}",
        "{% for line in event.properties.lines %}{{ user['nickname'] }}{% endfor %}",
    ],
)
def test_an_undeclared_trait_in_a_branch_the_sample_does_not_take_is_a_problem(
    body: str, tmp_path: Path
) -> None:
    template = {"subject.txt": "Your order", "body.txt": body}
    path = payment_email_rule_file(tmp_path, template, "lines: array")

    assert problems_of(path) == [NICKNAME]


def test_an_undeclared_property_in_an_untaken_branch_names_the_event_type(tmp_path: Path) -> None:
    body = "{% if user.first_name %}{% else %}{{ event.properties.amout }}{% endif %}"
    path = payment_email_rule_file(tmp_path, {"subject.txt": "Order", "body.txt": body})

    assert problems_of(path) == [
        "rule ORDER: template order/body.txt uses event.properties.amout, which the rule file"
        " does not declare for payment_failed events: did you mean event.properties.amount?"
        " (or declare it under events: payment_failed: properties:)"
    ]


def test_a_name_read_in_a_taken_and_an_untaken_branch_is_said_once(tmp_path: Path) -> None:
    body = "{{ user.nickname }}{% if not user.first_name %}{{ user.nickname }}{% endif %}"
    path = payment_email_rule_file(tmp_path, {"subject.txt": "Order", "body.txt": body})

    assert problems_of(path) == [NICKNAME]


@pytest.mark.parametrize(
    "body",
    [
        "{% if user.nickname is defined %}Hi {{ user.nickname }}{% endif %}",
        "{% if not user.first_name %}Hi {{ user.nickname | default('there') }}{% endif %}",
        "{% for user in event.properties.lines %}{{ user.name }}{% endfor %}",
        "{% macro greet(user) %}{{ user.name }}{% endmacro %}{{ greet(event.properties.meta) }}",
        "{{ event.properties.meta.plan }}{% for line in event.properties.lines %}"
        "{{ line.sku }}{% endfor %}",
        "{# {{ user.nickname }} #}{{ 'user.nickname' }}",
        "{% for name, value in event.properties.items() %}{{ name }}={{ value }}{% endfor %}",
    ],
)
def test_what_the_check_allows_in_a_taken_branch_it_allows_in_any(
    body: str, tmp_path: Path
) -> None:
    template = {"subject.txt": "Your order", "body.txt": body}
    path = payment_email_rule_file(tmp_path, template, "lines: array", "meta: object")

    load_ruleset(path)


# A name stood in as text, and its items' keys were then said to be missing from a
# 'str object': a second problem the author had not made.
LOOP = {
    "subject.txt": "S",
    "body.txt": "{% for line in event.properties.lines %}{{ line.sku }}{% endfor %}",
}


def test_a_loop_over_a_misspelt_list_is_not_also_said_to_fail_on_its_items(
    tmp_path: Path,
) -> None:
    path = payment_email_rule_file(tmp_path, LOOP, "lnes: array")

    assert problems_of(path) == [
        "rule ORDER: template order/body.txt uses event.properties.lines, which the rule file"
        " does not declare for payment_failed events: did you mean event.properties.lnes?"
        " (or declare it under events: payment_failed: properties:)"
    ]


def test_a_loop_over_a_list_whose_declaration_is_refused_is_only_that_problem(
    tmp_path: Path,
) -> None:
    path = payment_email_rule_file(tmp_path, LOOP, "lines: {type: array, items: {type: object}}")

    assert problems_of(path) == [
        "event payment_failed: property lines: unknown key `items` (known: type, required,"
        " minimum, maximum, enum)"
    ]
