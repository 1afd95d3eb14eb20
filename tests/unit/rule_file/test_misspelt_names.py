"""A condition or template that reads a name the file does not declare, but one it does
declares under a close spelling (or under another owner: `event.amount` for
`event.properties.amount`), is said to be that name mistyped: advised only to declare it,
an author would declare the misspelling, and the rule would never see the value its
events send."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.rules.loader import load_ruleset
from tests.support.rule_file_writing import checked_problems, problems_of, write_rule_file


def _condition_rule(when: str) -> str:
    return f"  - {{id: R1, trigger: payment_failed, channel: internal, when: '{when}'}}\n"


def test_a_misspelt_property_in_a_condition_names_the_declared_one(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, _condition_rule("event.properties.amout > 5"))

    assert problems_of(path) == [
        "rule R1: `when: event.properties.amout > 5` uses event.properties.amout, which the"
        " rule file does not declare for payment_failed events: did you mean"
        " event.properties.amount? (or declare it under events: payment_failed: properties:,"
        " or test it first with has(event.properties.amout))"
    ]


def test_a_misspelt_trait_in_a_condition_names_the_declared_one(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, _condition_rule('user.FirstName == "Ada"'))

    (problem,) = problems_of(path)
    assert "uses user.FirstName, which the rule file does not declare: did you mean" in problem
    assert "did you mean user.first_name? (or declare it under traits:" in problem


def test_a_misspelt_trait_in_a_template_names_the_declared_one(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: R1, trigger: signup_completed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": "Hi {{ user.frist_name }}", "body.txt": "Welcome."}},
    )

    assert checked_problems(path) == [
        "rule R1: template hi/subject.txt uses user.frist_name, which the rule file does not"
        " declare: did you mean user.first_name? (or declare it under traits:)"
    ]


def test_a_property_read_from_the_event_itself_names_it_under_properties(
    tmp_path: Path,
) -> None:
    path = write_rule_file(tmp_path, _condition_rule("event.amount > 5"))

    assert problems_of(path) == [
        "rule R1: `when: event.amount > 5` uses event.amount, which no event has (an event has"
        " id, type, user_id, timestamp and properties): did you mean event.properties.amount?"
    ]


def test_a_trait_read_as_a_property_names_the_trait(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, _condition_rule('event.properties.first_name == "Ada"'))

    (problem,) = problems_of(path)
    assert "for payment_failed events: did you mean user.first_name? (or declare it" in problem


def test_a_name_like_none_declared_gets_no_guess(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, _condition_rule('user.nickname == "Al"'))

    assert problems_of(path) == [
        'rule R1: `when: user.nickname == "Al"` uses user.nickname, which the rule file does'
        " not declare (declare it under traits:, or test it first with has(user.nickname))"
    ]


@pytest.mark.parametrize(
    ("printed", "meant"),
    [
        ("first_name", "user.first_name"),
        ("amount", "event.properties.amount"),
        ("timestamp", "event.timestamp"),
        ("firstname", "user.first_name"),
    ],
)
def test_a_template_reading_a_name_alone_names_where_it_is(
    printed: str, meant: str, tmp_path: Path
) -> None:
    # Other tools print a trait as {{ first_name }}; Jinja said "'first_name' is undefined".
    path = write_rule_file(
        tmp_path,
        "  - {id: R1, trigger: payment_failed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": f"Hi {{{{ {printed} }}}}", "body.txt": "Welcome."}},
    )

    assert problems_of(path) == [
        f"rule R1: template hi/subject.txt uses {printed}, which a template does not have"
        " (it has user, with the traits, and event, with the properties under"
        f" event.properties): did you mean {meant}?"
    ]


def test_a_template_reading_an_unknown_name_alone_says_which_it_has(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: R1, trigger: payment_failed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": "Hi {{ customer.first_name }}", "body.txt": "Welcome."}},
    )

    assert problems_of(path) == [
        "rule R1: template hi/subject.txt uses customer, which a template does not have"
        " (it has user, with the traits, and event, with the properties under"
        " event.properties)"
    ]


def test_every_name_a_template_gets_wrong_is_listed_in_one_check(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: R1, trigger: payment_failed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": "Hi {{ user.frist_name }}", "body.txt": "{{ amount }} {{ vip }}"}},
    )

    problems = problems_of(path)

    assert [problem.split(" uses ")[1].split(",")[0] for problem in problems] == [
        "user.frist_name",
        "amount",
        "vip",
    ]


@pytest.mark.parametrize(
    ("when", "meant"),
    [
        ("amount > 5", "event.properties.amount"),
        ('first_name == "Ada"', "user.first_name"),
        ('properties.amount > 5 && first_name == "Ada"', "user.first_name, event.properties"),
    ],
)
def test_a_condition_reading_a_name_alone_names_where_it_is(
    when: str, meant: str, tmp_path: Path
) -> None:
    path = write_rule_file(tmp_path, _condition_rule(when))

    [problem] = problems_of(path)
    assert problem.endswith(f"only `event` and `user` exist: did you mean {meant}?")


@pytest.mark.parametrize(
    "subject",
    [
        'Hi {{ user.firstname | default("there") }}',
        "Hi {% if user.frist_name is defined %}{{ user.frist_name }}{% endif %}",
    ],
)
def test_a_misspelt_name_given_a_default_is_a_problem_naming_the_declared_one(
    subject: str, tmp_path: Path
) -> None:
    # Left to the events as any name given a default is, it printed "there" to every
    # user: no event sends the misspelling.
    path = write_rule_file(
        tmp_path,
        "  - {id: R1, trigger: payment_failed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": subject, "body.txt": "Welcome."}},
    )

    [problem] = problems_of(path)
    assert problem.startswith("rule R1: template hi/subject.txt tests for user.")
    assert problem.endswith(
        ", which the rule file does not declare, and no event will send: did you mean"
        " user.first_name? (declare it under traits: if it is meant)"
    )


def test_a_name_given_a_default_like_none_declared_is_left_to_the_events(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: R1, trigger: payment_failed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": 'Hi {{ user.nickname | default("there") }}', "body.txt": "W"}},
    )

    load_ruleset(path)


def test_a_name_given_a_default_that_extends_a_declared_one_is_left_to_the_events(
    tmp_path: Path,
) -> None:
    subject = "Hi {{ user.first_name_local | default(user.first_name) }}"
    path = write_rule_file(
        tmp_path,
        "  - {id: R1, trigger: payment_failed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": subject, "body.txt": "Welcome."}},
    )

    load_ruleset(path)


def test_a_misspelt_name_a_condition_tests_for_is_a_problem_naming_the_declared_one(
    tmp_path: Path,
) -> None:
    # Left to the events as any name tested with has() is, the rule never held: no event
    # sends the misspelling.
    path = write_rule_file(
        tmp_path, _condition_rule('has(user.firstname) && user.firstname == "Ada"')
    )

    assert problems_of(path) == [
        'rule R1: `when: has(user.firstname) && user.firstname == "Ada"` tests for'
        " user.firstname, which the rule file does not declare, and no event will send: did"
        " you mean user.first_name? (declare it under traits: if it is meant)"
    ]


def test_a_name_a_condition_tests_for_like_none_declared_is_left_to_the_events(
    tmp_path: Path,
) -> None:
    path = write_rule_file(
        tmp_path, _condition_rule('has(user.first_name_local) && user.first_name_local == "A"')
    )

    load_ruleset(path)
