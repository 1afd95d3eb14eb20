"""A client's value in body.html stays escaped: a template that marks one safe or prints it
with autoescape off would put a user's text (a name typed at signup) into a customer's
email as HTML, a phishing link or a broken layout. Such a body.html is refused when the
rule file loads, naming the line and what to write instead; text the template writes
itself may still be marked safe, and the subject and text body are not HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.rules.loader import load_ruleset
from tests.support.rule_file_writing import checked_problems, payment_email_rule_file, problems_of

DECLARED = ("note: string", "lines: array", "meta: object")
WHY = "so markup or a link in it (in a name a user typed at signup, say) would go into the email"
MARKED_SAFE = (
    "rule ORDER: template order/body.html line 2: `| safe` marks user.first_name as HTML, "
    f"{WHY} as it is: drop `| safe` (body.html escapes each value it prints) or, to keep its"
    ' line breaks, escape it first, {{ user.first_name | e | replace("\\n", "<br>" | safe) }}'
)
AUTOESCAPE_OFF = (
    "rule ORDER: template order/body.html line 3: prints event.properties.note in"
    f" `{{% autoescape false %}}` (line 2), {WHY} as it is: print it outside that block, or"
    " escape it there, {{ event.properties.note | e }}"
)


def html_email(tmp_path: Path, html: str) -> Path:
    template = {"subject.txt": "Your order", "body.txt": "Hello", "body.html": html}
    return payment_email_rule_file(tmp_path, template, *DECLARED)


def test_a_trait_marked_safe_is_refused_naming_the_line_and_what_to_write(tmp_path: Path) -> None:
    path = html_email(tmp_path, "<p>Hello</p>\n<p>{{ user.first_name | safe }}</p>\n")

    assert problems_of(path) == [MARKED_SAFE]


def test_a_property_printed_with_autoescape_off_is_refused_naming_the_block(
    tmp_path: Path,
) -> None:
    html = "<p>Hello</p>\n{% autoescape false %}\n{{ event.properties.note }}\n{% endautoescape %}"
    path = html_email(tmp_path, html)

    assert problems_of(path) == [AUTOESCAPE_OFF]


def test_herald_rules_check_lists_the_same_problem(tmp_path: Path) -> None:
    path = html_email(tmp_path, "<p>Hello</p>\n<p>{{ user.first_name | safe }}</p>\n")

    assert checked_problems(path) == [MARKED_SAFE]


@pytest.mark.parametrize(
    ("html", "said"),
    [
        ("{{ user.first_name | safe | truncate(50) }}", "`| safe` marks user.first_name as HTML"),
        ("{{ user['first_name'] | safe }}", "`| safe` marks user.first_name as HTML"),
        (
            "{{ user.first_name | striptags | safe }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        # `striptags` gives back the text an escaped value held, entities unescaped: a
        # name of `<a href=...>` escaped first went into the email as a link.
        (
            "{{ user.first_name | e | striptags | safe }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        (
            "{{ (user.first_name | e | upper).unescape() | safe }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        (
            "{% set n = user.first_name | e %}{{ n | striptags | safe }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        (
            "{% set n %}<b>{{ user.first_name }}</b>{% endset %}{{ n | striptags | safe }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        (
            "{% macro bold(text) %}<b>{{ text }}</b>{% endmacro %}"
            "{{ bold(user.first_name) | striptags | safe }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        (
            "{{ ('Dear ' ~ user.first_name) | safe }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        (
            "{% set n = user.first_name %}{{ n | safe }}",
            "`| safe` marks n (which holds user.first_name) as HTML",
        ),
        (
            "{% set a = event.properties.note %}{% set b = a %}{{ b | safe }}",
            "`| safe` marks b (which holds event.properties.note) as HTML",
        ),
        (
            "{% set ns = namespace(v='') %}{% set ns.v = event.properties.note %}{{ ns.v | safe }}",
            "`| safe` marks ns.v (which holds event.properties.note) as HTML",
        ),
        (
            "{% with n = user.first_name %}{{ n | safe }}{% endwith %}",
            "`| safe` marks n (which holds user.first_name) as HTML",
        ),
        (
            "{% for line in event.properties.lines %}{{ line | safe }}{% endfor %}",
            "`| safe` marks line (which holds event.properties.lines) as HTML",
        ),
        (
            "{% for line in event.properties.lines %}{{ loop.previtem | safe }}{% endfor %}",
            "`| safe` marks loop.previtem (which holds event.properties.lines) as HTML",
        ),
        (
            "{% macro say(text) %}{{ text | safe }}{% endmacro %}{{ say(user.first_name) }}",
            "`| safe` marks text (which holds user.first_name) as HTML",
        ),
        (
            "{% macro say(text) %}{{ text | safe }}{% endmacro %}{{ say(text=user.first_name) }}",
            "`| safe` marks text (which holds user.first_name) as HTML",
        ),
        (
            "{% macro say(text='<b>') %}{{ text | safe }}{% endmacro %}"
            "{{ say(event.properties.meta) }}",
            "`| safe` marks text (which holds event.properties.meta) as HTML",
        ),
        (
            "{% macro say() %}{{ varargs | join | safe }}{% endmacro %}{{ say(user.first_name) }}",
            "`| safe` marks a value made from user.first_name as HTML",
        ),
        (
            "{% macro say(text) %}{{ text | safe }}{% endmacro %}{% set speak = say %}"
            "{{ speak(user.first_name) }}",
            "`| safe` marks text (which holds user.first_name) as HTML",
        ),
        (
            "{% macro row() %}{{ caller(event.properties.note) }}{% endmacro %}"
            "{% call(cell) row() %}{{ cell | safe }}{% endcall %}",
            "`| safe` marks cell (which holds event.properties.note) as HTML",
        ),
        (
            "{{ event.properties.lines | map('safe') | join }}",
            '`map("safe")` marks event.properties.lines as HTML',
        ),
        (
            "{{ event.properties.amount | tojson }}",
            "`| tojson` marks event.properties.amount as HTML with its double quotes unescaped",
        ),
        (
            "{% autoescape false %}{{ user.first_name | upper }}{% endautoescape %}",
            "prints a value made from user.first_name in `{% autoescape false %}` (line 1)",
        ),
        (
            "{% autoescape false %}{% set n = user.first_name %}{{ n }}{% endautoescape %}",
            "prints n (which holds user.first_name) in `{% autoescape false %}` (line 1)",
        ),
        (
            "{% macro say(text) %}{% autoescape false %}{{ text }}{% endautoescape %}"
            "{% endmacro %}{{ say(user.first_name) }}",
            "prints text (which holds user.first_name) in `{% autoescape false %}` (line 1)",
        ),
    ],
)
def test_a_client_value_marked_safe_or_printed_unescaped_is_refused(
    html: str, said: str, tmp_path: Path
) -> None:
    path = html_email(tmp_path, html)

    problems = problems_of(path)

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"rule ORDER: template order/body.html line 1: {said}")


@pytest.mark.parametrize(
    "html",
    [
        '{{ "<br>" | safe }}',
        "{{ event.properties.lines | join('<br>' | safe) }}",
        "{% set sep = '<br>' %}{{ event.properties.lines | join(sep | safe) }}",
        "{{ ('<b>' if user.first_name else '<i>') | safe }}",
        "{% macro rule(html) %}{{ html | safe }}{% endmacro %}{{ rule('<hr>') }}",
        "{% macro bold(text) %}<b>{{ text }}</b>{% endmacro %}{{ bold(user.first_name) | safe }}",
        "{% filter safe %}{{ user.first_name }}{% endfilter %}",
        "{% set n %}{{ user.first_name }}{% endset %}{{ n | safe }}",
        "{% autoescape false %}<b>{{ '<i>' }}</b>{{ user.first_name | e }}{% endautoescape %}",
        "{% autoescape false %}{% autoescape true %}{{ user.first_name }}{% endautoescape %}"
        "{% endautoescape %}",
        "{% for line in event.properties.lines %}{{ loop.index | safe }}{% endfor %}",
        "{{ user.first_name | e | safe }}",
        "{{ '<b>Hi</b>' | striptags | safe }}",
        "{{ user.first_name | e | striptags }}",
    ],
)
def test_text_the_template_writes_or_a_value_escaped_first_may_be_marked_safe(
    html: str, tmp_path: Path
) -> None:
    load_ruleset(html_email(tmp_path, html))


@pytest.mark.parametrize("part", ["subject.txt", "body.txt"], ids=["subject", "text body"])
def test_the_subject_and_the_text_body_are_not_html_and_are_left_alone(
    part: str, tmp_path: Path
) -> None:
    template = {"subject.txt": "Order", "body.txt": "Hello", "body.html": "<p>Hello</p>"}
    template[part] = (
        "{{ user.first_name | safe }}{% autoescape false %}{{ event.properties.note }}"
        "{% endautoescape %}"
    )
    load_ruleset(payment_email_rule_file(tmp_path, template, *DECLARED))


def test_the_escaped_way_to_keep_line_breaks_escapes_the_value(tmp_path: Path) -> None:
    html = '{{ user.first_name | e | replace("\\n", "<br>" | safe) }}'
    ruleset = load_ruleset(html_email(tmp_path, html))
    user = {"id": "u_1", "first_name": '<a href="https://evil.example">Ada</a>\nLovelace'}
    event = {"properties": {"amount": 1}}

    rendered = ruleset.templates.render("order", {"user": user, "event": event})

    assert rendered.html == (
        "&lt;a href=&#34;https://evil.example&#34;&gt;Ada&lt;/a&gt;<br>Lovelace"
    )


def test_a_filter_block_marked_safe_has_its_values_escaped_before_the_filter(
    tmp_path: Path,
) -> None:
    html = "{% filter safe %}<b>{{ user.first_name }}</b>{% endfilter %}"
    ruleset = load_ruleset(html_email(tmp_path, html))
    user = {"id": "u_1", "first_name": "<i>Ada</i>"}

    rendered = ruleset.templates.render("order", {"user": user, "event": {"properties": {}}})

    assert rendered.html == "<b>&lt;i&gt;Ada&lt;/i&gt;</b>"


def test_each_use_in_a_template_is_said_with_its_line(tmp_path: Path) -> None:
    html = "{{ user.first_name | safe }}\n{{ event.properties.note | safe }}"
    path = html_email(tmp_path, html)

    assert [problem.split(" as HTML")[0] for problem in problems_of(path)] == [
        "rule ORDER: template order/body.html line 1: `| safe` marks user.first_name",
        "rule ORDER: template order/body.html line 2: `| safe` marks event.properties.note",
    ]
