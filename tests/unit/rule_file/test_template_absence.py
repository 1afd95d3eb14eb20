"""A template that fails on every event without one of its optional properties, or for
every user without one of the traits, is a problem of the rule file: each such event
would skip the rule (a receipt never sent) while the check said the file was fine."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.rules.loader import load_ruleset
from tests.support.rule_file_writing import payment_email_rule_file, problems_of, redeclare


def test_arithmetic_on_an_optional_property_is_a_problem_naming_it_and_the_cure(
    tmp_path: Path,
) -> None:
    template = {"subject.txt": "Receipt", "body.txt": "Fee: {{ event.properties.fee * 2 }}"}
    path = payment_email_rule_file(tmp_path, template, "fee: number")

    # "a sample", as a condition's problem says it: "a account_opened event" read wrong.
    # A null is named too: an event sending the fee as null has none either, which
    # "without" alone did not say.
    assert problems_of(path) == [
        "rule ORDER: template order fails on a sample payment_failed event without its optional"
        " property fee, or with it null (declare it `required: true` if every event has it):"
        " event.properties.fee is absent, and the template uses it in a multiplication (*):"
        " test it first with `{% if event.properties.fee is defined %}`, or give it a default"
        " with `| default(...)`"
    ]


def test_formatting_a_trait_a_user_may_not_have_is_a_problem(tmp_path: Path) -> None:
    body = 'Hi {{ user.first_name.title() }}, {{ "%.2f" | format(event.properties.amount) }}'
    path = payment_email_rule_file(tmp_path, {"subject.txt": "Receipt", "body.txt": body})

    assert problems_of(path) == [
        "rule ORDER: template order fails for a user without the trait first_name (all traits"
        " are optional): user.first_name is absent, and the template uses it in a method call"
        " (such as `.title()`): test it first with `{% if user.first_name is defined %}`, or"
        " give it a default with `| default(...)`"
    ]


@pytest.mark.parametrize(
    "body",
    [
        "{% if event.properties.fee is defined %}Fee: {{ event.properties.fee * 2 }}{% endif %}",
        "{% if event.properties.fee %}Fee: {{ event.properties.fee * 2 }}{% endif %}",
        "Fee: {{ event.properties.fee | default(0) * 2 }}",
        "Fee: {{ event.properties.fee }} for {{ user.first_name }}",
        "Hi {{ (user.first_name or 'there') | title }}",
        '{{ "%.2f" | format(event.properties.amount) }}',
    ],
)
def test_a_template_that_copes_with_what_may_be_absent_loads(body: str, tmp_path: Path) -> None:
    path = payment_email_rule_file(tmp_path, {"subject.txt": "S", "body.txt": body}, "fee: number")

    load_ruleset(path)


def test_a_property_the_condition_reads_is_left_present(tmp_path: Path) -> None:
    # The condition is false on an event without the fee: the template never sees one.
    template = {"subject.txt": "Receipt", "body.txt": "Fee: {{ event.properties.fee * 2 }}"}
    path = payment_email_rule_file(tmp_path, template, "fee: number")
    redeclare(path, "template: order}", "when: 'has(event.properties.fee)', template: order}")

    load_ruleset(path)


def test_a_required_property_is_never_absent(tmp_path: Path) -> None:
    template = {"subject.txt": "Receipt", "body.txt": "Fee: {{ event.properties.fee * 2 }}"}
    path = payment_email_rule_file(tmp_path, template, "fee: {type: number, required: true}")

    load_ruleset(path)


def test_the_recipient_and_unsubscribed_which_every_render_has_are_left_present(
    tmp_path: Path,
) -> None:
    # Without its email the rule is skipped before its message is rendered, and
    # `unsubscribed` is [] for a user who unsubscribed from nothing.
    body = 'Sent to {{ user.email.split("@")[0] }}, {{ user.unsubscribed.count("sms") }}'
    path = payment_email_rule_file(tmp_path, {"subject.txt": "S", "body.txt": body})
    redeclare(path, "  first_name: string", "  first_name: string\n  unsubscribed: array")

    load_ruleset(path)
