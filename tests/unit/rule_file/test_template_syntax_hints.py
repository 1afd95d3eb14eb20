"""A template written as Liquid or Handlebars writes it, as the marketing tools many
authors come from do, is refused saying how Jinja writes it: Jinja's own error names
only the token it stopped at."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.rule_file_writing import problems_of, write_rule_file

FILTER = 'Jinja gives a filter its arguments in parentheses: `| default("there")`'
BLOCKS = "Jinja writes blocks as `{% if ... %}...{% endif %}`, `{% for x in ... %}...{% endfor %}`"
OR_AND = 'Jinja writes `or`, `and` and `not`; a fallback is `| default("there")`'
UNLESS = "Jinja has no `unless`: write `{% if not ... %}...{% endif %}`"


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ('Hi {{ user.first_name | default: "there" }}', FILTER),
        ("Hi {{ user.first_name | truncate: 10 }}", FILTER),
        ("{{#if user.first_name}}Hi {{user.first_name}}{{/if}}", BLOCKS),
        ('Hi {{ user.first_name || "there" }}', OR_AND),
        ("{% if user.first_name && user.email %}Hi{% endif %}", OR_AND),
        ("{% unless user.first_name %}Hi{% endunless %}", UNLESS),
    ],
)
def test_another_template_language_s_syntax_is_refused_saying_how_jinja_writes_it(
    body: str, hint: str, tmp_path: Path
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: HI, trigger: signup_completed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": "Hello", "body.txt": body}},
    )

    [problem] = problems_of(path)

    assert problem.startswith("rule HI: template hi/body.txt line 1: ")
    assert problem.endswith(f"({hint})")


def test_a_jinja_mistake_gets_no_other_language_s_hint(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: HI, trigger: signup_completed, channel: email, category: transactional,"
        " template: hi}\n",
        {"hi": {"subject.txt": "Hello", "body.txt": '{{ user.first_name | default("x" }}'}},
    )

    assert problems_of(path) == [
        "rule HI: template hi/body.txt line 1: unexpected '}', expected ')'"
    ]


def test_each_part_that_does_not_compile_is_said_in_one_check(tmp_path: Path) -> None:
    """The check stopped at the first part that did not compile: an author who wrote all
    three in Liquid fixed the subject, ran the check again to hear of the body, and again
    for the HTML."""
    path = write_rule_file(
        tmp_path,
        "  - {id: HI, trigger: signup_completed, channel: email, category: transactional,"
        " template: hi}\n",
        {
            "hi": {
                "subject.txt": 'Hi {{ user.first_name | default: "there" }}',
                "body.txt": "{% unless user.first_name %}Hi{% endunless %}",
                "body.html": "<p>Hello</p>",
            }
        },
    )

    problems = problems_of(path)

    assert [problem.split(" line 1: ")[0] for problem in problems] == [
        "rule HI: template hi/subject.txt",
        "rule HI: template hi/body.txt",
    ]
    assert problems[0].endswith(f"({FILTER})") and problems[1].endswith(f"({UNLESS})")
