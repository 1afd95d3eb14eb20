"""Loading a rule file: every mistake is reported with the rule and what is wrong, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.definition import Category
from herald.rules.loader import RuleFileError, default_rules_path, load_ruleset
from tests.support.rule_files import (
    EVERY_PROBLEM,
    beginnings,
    listed_problems,
    write_broken_rule_file,
)

EVENTS = """
events:
  signup_completed: {}
  payment_failed:
    properties:
      amount: {type: number, required: true}
traits:
  email: string
  first_name: string
"""

GOOD_RULE = """
  - id: GOOD
    trigger: signup_completed
    channel: email
    category: transactional
    template: hello
"""

HELLO = {"subject.txt": "Hello {{ user.first_name }}", "body.txt": "Welcome, {{ user.email }}."}

# A terminal wide enough that Rich prints paths and problems on one line each.
WIDE = {"COLUMNS": "1000"}


def write_rule_file(
    directory: Path,
    rules: str,
    templates: dict[str, dict[str, str]] | None = None,
) -> Path:
    """A rule file with the shared event types, and a ``templates/`` folder beside it."""
    for name, parts in {"hello": HELLO, **(templates or {})}.items():
        folder = directory / "templates" / name
        folder.mkdir(parents=True, exist_ok=True)
        for part, text in parts.items():
            (folder / part).write_text(text, encoding="utf-8")
    path = directory / "rules.yaml"
    path.write_text(EVENTS + "rules:\n" + rules, encoding="utf-8")
    return path


def redeclare(path: Path, declared: str, instead: str) -> None:
    """Replace ``declared``, a declaration of the shared ones, in the rule file at ``path``."""
    text = path.read_text(encoding="utf-8")
    assert declared in text
    path.write_text(text.replace(declared, instead), encoding="utf-8")


def payment_email_rule_file(
    directory: Path, template: dict[str, str], *declarations: str, rule: str = "ORDER"
) -> Path:
    """A rule file whose one rule, ``rule``, emails ``template`` (named as the rule, in
    lower case) on ``payment_failed``, whose properties also declare ``declarations``
    (``"meta: object"``)."""
    name = rule.lower()
    path = write_rule_file(
        directory,
        f"  - {{id: {rule}, trigger: payment_failed, channel: email, category: transactional,"
        f" template: {name}}}\n",
        {name: template},
    )
    amount = "amount: {type: number, required: true}"
    redeclare(path, amount, "\n      ".join([amount, *declarations]))
    return path


def checked_problems(path: Path) -> list[str]:
    """What ``herald rules check`` lists for the rule file at ``path``, which it refuses."""
    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)
    assert result.exit_code == 1
    return listed_problems(result.output)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_ruleset(path)
    assert caught.value.path == str(path)
    return caught.value.problems


def test_the_default_rule_file_loads_its_four_rules() -> None:
    ruleset = load_ruleset()

    assert [rule.id for rule in ruleset.rules] == [
        "WELCOME_EMAIL",
        "BANK_LINK_NUDGE_SMS",
        "INSUFFICIENT_FUNDS_EMAIL",
        "HIGH_RISK_ALERT",
    ]
    assert ruleset.source == str(default_rules_path())


def test_only_rules_limited_once_per_user_are_lifetime_rules() -> None:
    ruleset = load_ruleset()

    assert ruleset.lifetime_rules() == {"WELCOME_EMAIL", "BANK_LINK_NUDGE_SMS"}


def test_a_valid_custom_file_loads_with_its_templates(tmp_path: Path) -> None:
    ruleset = load_ruleset(write_rule_file(tmp_path, GOOD_RULE))

    assert [rule.id for rule in ruleset.rules] == ["GOOD"]
    [rule] = ruleset.rules
    assert rule.template == "hello"
    rendered = ruleset.templates.render("hello", {"user": {"first_name": "Ana", "email": "a@x.io"}})
    assert (rendered.subject, rendered.body) == ("Hello Ana", "Welcome, a@x.io.")


def test_a_description_left_empty_is_no_description(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + "    description:\n")
    redeclare(path, "signup_completed: {}", "signup_completed: {description: }")

    ruleset = load_ruleset(path)

    assert ruleset.event_types["signup_completed"].description == ""
    assert ruleset.rules[0].description == ""


def test_a_description_yaml_reads_as_other_than_text_is_refused_asking_to_quote_it(
    tmp_path: Path,
) -> None:
    # Accepted, `GET /rules` showed it in Python's spelling: "['beta']", "True".
    path = write_rule_file(tmp_path, GOOD_RULE + "    description: [beta]\n")
    redeclare(path, "signup_completed: {}", "signup_completed: {description: yes}")

    assert problems_of(path) == [
        "event signup_completed: `description` must be text, but YAML read a boolean: quote it",
        "rule GOOD: `description` must be text, but YAML read a list: quote it",
    ]


def test_a_description_yaml_reads_as_a_number_or_a_date_is_shown_as_written(
    tmp_path: Path,
) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + "    description: 2026-01-15\n")
    redeclare(path, "signup_completed: {}", "signup_completed: {description: 2026}")

    ruleset = load_ruleset(path)

    assert ruleset.event_types["signup_completed"].description == "2026"
    assert ruleset.rules[0].description == "2026-01-15"


BROKEN_RULES = {
    "unknown_trigger": (
        "  - {id: BROKEN, trigger: payment_refunded, channel: email, category: transactional,"
        " template: hello}\n",
        "rule BROKEN: `trigger: payment_refunded` is not a declared event type",
    ),
    "condition_does_not_compile": (
        "  - {id: BROKEN, trigger: signup_completed, channel: email, category: transactional,"
        " template: hello, when: 'user.x =='}\n",
        "rule BROKEN: `when: user.x ==` does not compile",
    ),
    "id_read_by_yaml_as_a_boolean": (
        "  - {id: yes, trigger: signup_completed, channel: internal}\n",
        "rule True: YAML read the id as a boolean (True): quote it, or name the rule",
    ),
    "id_read_by_yaml_as_false": (
        "  - {id: off, trigger: signup_completed, channel: internal}\n",
        "rule False: YAML read the id as a boolean (False): quote it, or name the rule",
    ),
    "no_trigger": (
        "  - {id: BROKEN, channel: internal}\n",
        "rule BROKEN: needs `trigger`: the event type that triggers it (['payment_failed',",
    ),
    "no_channel": (
        "  - {id: BROKEN, trigger: signup_completed}\n",
        "rule BROKEN: needs `channel` (one of ['email', 'sms', 'internal'])",
    ),
    "condition_read_by_yaml_as_a_list": (
        "  - {id: BROKEN, trigger: signup_completed, channel: internal, when: [user.vip]}\n",
        "rule BROKEN: `when` must be a CEL expression, but YAML read a list in it: quote the "
        "expression",
    ),
    "unknown_channel": (
        "  - {id: BROKEN, trigger: signup_completed, channel: pigeon}\n",
        "rule BROKEN: unknown channel 'pigeon'",
    ),
    "unknown_limit": (
        "  - {id: BROKEN, trigger: signup_completed, channel: email, category: transactional,"
        " template: hello, limit: twice_a_day}\n",
        "rule BROKEN: unknown limit 'twice_a_day'",
    ),
    "unknown_variable": (
        "  - {id: BROKEN, trigger: signup_completed, channel: email, category: transactional,"
        " template: hello, when: 'account.vip'}\n",
        "rule BROKEN: `when: account.vip` uses unknown variable(s) ['account']",
    ),
    "bad_within": (
        "  - id: BROKEN\n    trigger: payment_failed\n    channel: email\n"
        "    category: transactional\n    template: hello\n"
        "    after: {event: signup_completed, within: a day}\n",
        "rule BROKEN: `after.within: a day` is not a duration like 30m, 24h or 7d",
    ),
    "window_too_long": (
        "  - id: BROKEN\n    trigger: payment_failed\n    channel: email\n"
        "    category: transactional\n    template: hello\n"
        "    after: {event: signup_completed, within: 99999999999d}\n",
        "rule BROKEN: `after.within: 99999999999d` is longer than the longest window, 3650d",
    ),
    "window_of_zero": (
        "  - id: BROKEN\n    trigger: payment_failed\n    channel: internal\n"
        "    after: {event: signup_completed, within: 0s}\n",
        "rule BROKEN: `after.within: 0s` is no window: only an event at the trigger's very "
        "instant would be in it (the shortest window is 1s; write 1s, 30m, 24h or 7d)",
    ),
    "unknown_key_in_after": (
        "  - id: BROKEN\n    trigger: payment_failed\n    channel: internal\n"
        "    after: {event: signup_completed, within: 24h, whithin: 1h}\n",
        "rule BROKEN: `after` holds unknown key(s) ['whithin']: it takes only `event` and `within`",
    ),
    "trigger_written_on": (
        # YAML 1.1 reads a bare `on` as true: the key was reported as `True`.
        "  - id: BROKEN\n    on: payment_failed\n    channel: internal\n",
        "rule BROKEN: a key YAML reads as true (`on`, `yes`, `y`): the event type that "
        "triggers a rule goes under `trigger`",
    ),
    "missing_template_folder": (
        "  - {id: BROKEN, trigger: signup_completed, channel: email, category: transactional,"
        " template: farewell}\n",
        "rule BROKEN: template 'farewell' not found",
    ),
    "template_syntax_error": (
        "  - {id: BROKEN, trigger: signup_completed, channel: email, category: transactional,"
        " template: broken}\n",
        "rule BROKEN: template broken/subject.txt:",
    ),
    "template_uses_undeclared_property": (
        "  - {id: BROKEN, trigger: payment_failed, channel: email, category: transactional,"
        " template: strict}\n",
        "rule BROKEN: template strict/body.txt uses event.properties.currency, which the rule"
        " file does not declare for payment_failed events"
        " (declare it under events: payment_failed: properties:)",
    ),
    "template_uses_undeclared_trait": (
        "  - {id: BROKEN, trigger: payment_failed, channel: email, category: transactional,"
        " template: nickname}\n",
        "rule BROKEN: template nickname/subject.txt uses user.nickname, which the rule file"
        " does not declare (declare it under traits:)",
    ),
    "template_uses_a_name_that_is_neither_event_nor_user": (
        "  - {id: BROKEN, trigger: payment_failed, channel: email, category: transactional,"
        " template: bare}\n",
        "rule BROKEN: template bare/body.txt: 'nickname' is undefined",
    ),
}

TEMPLATES = {
    "broken": {"subject.txt": "Hi {% if %}", "body.txt": "x"},
    "strict": {"subject.txt": "Failed", "body.txt": "{{ event.properties.currency }}"},
    "nickname": {"subject.txt": "Hi {{ user.nickname }}", "body.txt": "x"},
    "bare": {"subject.txt": "Hi", "body.txt": "{{ nickname }}"},
}


@pytest.mark.parametrize(("rules", "problem"), list(BROKEN_RULES.values()), ids=list(BROKEN_RULES))
def test_a_broken_rule_is_refused_naming_the_rule_and_the_problem(
    rules: str, problem: str, tmp_path: Path
) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + rules, TEMPLATES)

    problems = problems_of(path)

    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


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


def test_a_condition_yaml_cut_at_a_hash_says_to_quote_it(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - id: CUT\n"
        "    trigger: signup_completed\n"
        "    channel: internal\n"
        '    when: user.first_name == "a #b"\n',
    )

    [problem] = problems_of(path)

    assert problem.startswith('rule CUT: `when: user.first_name == "a` does not compile')
    assert problem.endswith(
        "(it ends inside a string: where the line goes on with ` #`, YAML read that and the "
        "rest of the line as a comment; quote the whole condition, e.g. "
        """when: 'user.name == "a #b"')"""
    )


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
    ],
    ids=["types", "include", "recursion"],
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


def test_a_rule_file_nested_too_deeply_to_read_is_a_problem_not_a_traceback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(EVENTS + "rules: []\nx-deep: " + "[" * 5000 + "]" * 5000 + "\n")

    assert checked_problems(path) == ["nested too deeply for YAML to read"]


def test_a_template_nested_too_deeply_to_compile_is_a_problem_not_a_traceback(
    tmp_path: Path,
) -> None:
    body = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
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
    "body",
    ["{{ 100 // (event.properties.amount - 1.5) }}", "{{ range(event.properties.amount) | list }}"],
    ids=["zero_on_the_sample", "whole_numbers_only"],
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


@pytest.mark.parametrize("when", ["true", "false"])
def test_a_condition_yaml_reads_as_a_boolean_is_cel_s_own(when: str, tmp_path: Path) -> None:
    rule = f"  - {{id: ALWAYS, trigger: signup_completed, channel: internal, when: {when}}}\n"

    [rule] = load_ruleset(write_rule_file(tmp_path, rule)).rules

    assert rule.condition is not None
    assert rule.condition.source == when
    assert rule.condition.evaluate({"event": {}, "user": {}}).holds is (when == "true")


def test_a_duplicate_rule_id_is_refused(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + GOOD_RULE)

    # It said "duplicate id" alone: in a long file, which two rules was left to find.
    assert problems_of(path) == ["rule GOOD: duplicate id: rules #1 and #2 both have it"]


def test_a_misspelt_section_is_refused_not_ignored(tmp_path: Path) -> None:
    """A `provider:` section ignored would leave email on the development stub."""
    path = write_rule_file(tmp_path, GOOD_RULE)
    path.write_text(path.read_text() + "provider:\n  email: {type: smtp, host: mail.example.com}\n")

    [problem] = problems_of(path)

    assert problem.startswith("provider: not a section of a rule file (events, traits, rules,")


def test_a_key_given_twice_is_refused_not_silently_replaced(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - id: TWICE\n    trigger: signup_completed\n    channel: internal\n"
        "    when: user.email == 'a@example.com'\n    when: user.email == 'b@example.com'\n",
    )

    [problem] = problems_of(path)

    assert problem.startswith("not valid YAML: while constructing a mapping")
    assert "found duplicate key 'when'" in problem
    assert "quote the whole condition" not in problem


@pytest.mark.parametrize(
    "when", ["!has(user.first_name)", 'user.first_name == "a: b"', '"Al" == user.first_name']
)
def test_a_condition_yaml_reads_as_its_own_syntax_is_refused_asking_to_quote_it(
    when: str, tmp_path: Path
) -> None:
    path = write_rule_file(
        tmp_path,
        f"  - id: R\n    trigger: signup_completed\n    channel: internal\n    when: {when}\n",
    )

    [problem] = problems_of(path)

    assert problem.startswith("not valid YAML: ")
    assert f'in "{path}", line ' in problem
    assert problem.endswith(
        "\n(YAML reads a condition's leading `!` or quote, or a `: ` in it, as its own: quote "
        "the whole condition, e.g. when: '!has(user.vip)')"
    )


def test_a_key_merged_from_an_anchor_may_be_overridden(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - <<: {id: BASE, trigger: payment_failed, channel: internal}\n"
        "    trigger: signup_completed\n",
    )

    [rule] = load_ruleset(path).rules

    assert (rule.id, rule.on) == ("BASE", "signup_completed")


def test_a_key_starting_with_x_is_left_alone_for_yaml_anchors(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE)
    path.write_text("x-common: &email {channel: email}\n" + path.read_text())

    assert [rule.id for rule in load_ruleset(path).rules] == ["GOOD"]


def test_every_problem_in_the_file_is_reported_at_once(tmp_path: Path) -> None:
    numbered = "".join(
        rules.replace("id: BROKEN", f"id: BROKEN_{n}")
        for n, (rules, _) in enumerate(BROKEN_RULES.values())
    )
    path = write_rule_file(tmp_path, GOOD_RULE + numbered, TEMPLATES)

    problems = problems_of(path)

    expected = [
        problem.replace("rule BROKEN:", f"rule BROKEN_{n}:")
        for n, (_, problem) in enumerate(BROKEN_RULES.values())
    ]
    assert len(problems) == len(expected), problems
    for wanted in expected:
        assert any(found.startswith(wanted) for found in problems), (wanted, problems)


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


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        # The dash left out: one rule as a mapping, refused as "`rules` must be a list".
        (
            "rules:\n  id: GOOD\n  trigger: signup_completed\n",
            "`rules` must be a list, got {'id': 'GOOD', 'trigger': 'signup_completed'}: list "
            "the rules, each starting with `- id:`",
        ),
        ("rules:\n", "`rules` is missing or empty: list the rules, each starting with `- id:`"),
        ("", "`rules` is missing or empty: list the rules, each starting with `- id:`"),
    ],
)
def test_a_rules_section_that_is_no_list_says_how_to_write_one(
    rules: str, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("events:\n  signup_completed: {}\n" + rules, encoding="utf-8")

    assert problems_of(path) == [problem]


def test_an_events_section_declaring_none_says_so(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("events: {}\nrules: []\n", encoding="utf-8")

    assert problems_of(path) == [
        "`events` must map each event type to its definition, and declares none (e.g. "
        "`events: {signup_completed: {}}`)"
    ]


def test_both_keys_of_a_window_are_checked_in_one_run(tmp_path: Path) -> None:
    # Only the event type was: a misspelt window unit came to light on the next run.
    path = write_rule_file(
        tmp_path,
        "  - {id: NUDGE, trigger: signup_completed, channel: internal,"
        " after: {event: bank_linked, within: 2w}}\n",
    )

    assert problems_of(path) == [
        "rule NUDGE: `after.event: bank_linked` is not a declared event type",
        "rule NUDGE: `after.within: 2w` is not a duration like 30m, 24h or 7d",
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
        " not declare (declare it under traits:)",
        "rule TYPOS: template typos/body.txt uses event.properties.amout, which the rule file"
        " does not declare for payment_failed events (declare it under events: payment_failed:"
        " properties:)",
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


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_rule_that_messages_the_user_must_say_whether_it_is_marketing(
    channel: str, tmp_path: Path
) -> None:
    """No category is safe to assume: transactional would send marketing without consent."""
    path = write_rule_file(
        tmp_path,
        f"  - {{id: PROMO, trigger: signup_completed, channel: {channel}, template: hello}}\n",
    )

    [problem] = problems_of(path)

    assert problem.startswith(
        "rule PROMO: needs `category: marketing` or `category: transactional`"
    )
    assert "honours unsubscribes" in problem
    assert "sent whatever they opted in to or unsubscribed from" in problem


def test_a_rule_that_messages_the_user_cannot_pass_for_an_internal_alert(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: PROMO, trigger: signup_completed, channel: sms, category: internal,"
        " template: hello}\n",
    )

    [problem] = problems_of(path)

    assert problem.startswith(
        "rule PROMO: `category: internal` is for `channel: internal` (alerts to the team); "
        "an sms rule messages the user"
    )


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_rule_that_messages_the_user_needs_a_template(channel: str, tmp_path: Path) -> None:
    # Without one, the user was sent the rule's id as a subject and an empty body.
    path = write_rule_file(
        tmp_path,
        f"  - {{id: NOTE, trigger: signup_completed, channel: {channel},"
        " category: transactional}\n",
    )

    assert problems_of(path) == [
        f"rule NOTE: needs `template`: an {channel} rule sends the user a text it must say"
    ]


def test_an_internal_alert_cannot_be_marketing(tmp_path: Path) -> None:
    # Accepted, consent was asked of the user the alert was about, and the alert skipped.
    path = write_rule_file(
        tmp_path,
        "  - {id: ALERT, trigger: signup_completed, channel: internal, category: marketing}\n",
    )

    assert problems_of(path) == [
        "rule ALERT: `category: marketing` is for rules that message the user; an internal "
        "alert is internal"
    ]


@pytest.mark.parametrize(
    ("key", "said"), [("when", "`when` is empty"), ("after", "`after` is empty")]
)
def test_a_condition_or_window_left_empty_is_a_problem_not_a_rule_for_every_event(
    key: str, said: str, tmp_path: Path
) -> None:
    path = write_rule_file(
        tmp_path,
        f"  - id: ALERT\n    trigger: signup_completed\n    channel: internal\n    {key}:\n",
    )

    [problem] = problems_of(path)

    assert problem.startswith(f"rule ALERT: {said}")


def test_an_internal_alert_needs_no_category(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path, "  - {id: ALERT, trigger: signup_completed, channel: internal}\n"
    )

    [rule] = load_ruleset(path).rules

    assert rule.category is Category.INTERNAL


def test_the_error_message_starts_with_the_file(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, "  - {id: BROKEN, trigger: signup_completed, channel: fax}\n")

    with pytest.raises(RuleFileError) as caught:
        load_ruleset(path)

    assert str(caught.value).startswith(f"{path}: rule BROKEN: unknown channel 'fax'")


def test_a_missing_rule_file_is_reported_not_raised_as_a_crash(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "absent.yaml") == ["cannot read: No such file or directory"]


def test_a_rule_file_not_saved_as_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + "    description: Caf\u00e9\n")
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))
    line = path.read_bytes()[: path.read_bytes().index(b"\xe9")].count(b"\n") + 1

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 1
    assert listed_problems(result.output) == [
        f"the file is not UTF-8 text (byte 0xe9 on line {line}): save it as UTF-8"
    ]


def test_a_template_not_saved_as_utf8_is_reported_with_its_rule(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE)
    (tmp_path / "templates" / "hello" / "body.txt").write_bytes(b"Ol\xe1 {{ user.email }}")

    assert problems_of(path) == [
        "rule GOOD: template hello/body.txt is not UTF-8 text (byte 0xe1 on line 1): "
        "save it as UTF-8"
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


# Versions: a rule's version follows its own text only

SECOND_RULE = """
  - id: SECOND
    trigger: payment_failed
    when: event.properties.amount > 10
    channel: internal
"""


def versions(path: Path) -> tuple[str, dict[str, str]]:
    ruleset = load_ruleset(path)
    return ruleset.version, {rule.id: rule.version for rule in ruleset.rules}


def test_changing_a_rule_changes_its_version_and_the_file_version_only(tmp_path: Path) -> None:
    before_file, before = versions(write_rule_file(tmp_path, GOOD_RULE + SECOND_RULE))
    edited = SECOND_RULE.replace("> 10", "> 20")
    after_file, after = versions(write_rule_file(tmp_path, GOOD_RULE + edited))

    assert after["SECOND"] != before["SECOND"]
    assert after["GOOD"] == before["GOOD"]
    assert after_file != before_file


def test_editing_a_template_changes_the_versions_of_its_rule_and_the_file(tmp_path: Path) -> None:
    before_file, before = versions(write_rule_file(tmp_path, GOOD_RULE + SECOND_RULE))
    edited = {"hello": {**HELLO, "body.txt": "Welcome aboard, {{ user.email }}."}}
    after_file, after = versions(write_rule_file(tmp_path, GOOD_RULE + SECOND_RULE, edited))

    # Messages and decisions carry the rule's version: another text is another version.
    assert after["GOOD"] != before["GOOD"]
    assert after["SECOND"] == before["SECOND"]
    assert after_file != before_file


def test_loading_the_same_file_twice_gives_the_same_versions(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + SECOND_RULE)

    assert versions(path) == versions(path)


# herald rules check


def test_rules_check_counts_one_rule_and_one_event_type_in_the_singular(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "events:\n  a: {}\nrules:\n  - {id: R, trigger: a, channel: internal}\n", encoding="utf-8"
    )

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 0, result.output
    assert result.output.endswith("OK: 1 rule over 1 event type\n")


def test_rules_check_lists_a_template_name_with_brackets_as_it_is(tmp_path: Path) -> None:
    rule = GOOD_RULE.replace("template: hello", "template: '[red]hello'")
    path = write_rule_file(tmp_path, rule, {"[red]hello": HELLO})

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 0, result.output
    assert "once_per_event, template [red]hello\n" in result.output


def test_rules_check_lists_the_default_rules_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["rules", "check"], env=WIDE)

    assert result.exit_code == 0, result.output
    for rule_id in (
        "WELCOME_EMAIL",
        "BANK_LINK_NUDGE_SMS",
        "INSUFFICIENT_FUNDS_EMAIL",
        "HIGH_RISK_ALERT",
    ):
        assert rule_id in result.output
    assert "OK: 4 rules over 4 event types" in result.output


def test_rules_check_without_a_path_checks_the_file_herald_rules_names(tmp_path: Path) -> None:
    # The file `herald serve` and `herald worker` would load, not the packaged one.
    path = write_rule_file(tmp_path, GOOD_RULE)

    result = CliRunner().invoke(app, ["rules", "check"], env={**WIDE, "HERALD_RULES": str(path)})

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path} (version ")
    assert "GOOD" in result.output
    assert "WELCOME_EMAIL" not in result.output


def test_rules_check_refuses_an_empty_herald_rules_as_serve_does() -> None:
    # Checking the packaged file instead would say OK to a setting the server refuses.
    result = CliRunner().invoke(app, ["rules", "check"], env={**WIDE, "HERALD_RULES": ""})

    assert result.exit_code == 1, result.output
    assert "error: invalid settings: HERALD_RULES: must name a rule file" in result.output
    assert "OK:" not in result.output


def test_rules_check_shows_a_rule_window_in_the_unit_it_was_written_in(
    tmp_path: Path,
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: SOON, trigger: payment_failed, channel: internal,\n"
        "     after: {event: signup_completed, within: 30m}}\n",
    )

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 0, result.output
    assert "after signup_completed within 30m" in result.output


@pytest.mark.parametrize(
    ("within", "shown"),
    [("90s", "90s"), ("30m", "30m"), ("24h", "24h"), ("1d", "1d"), ("007d", "7d"), (" 2 h", "2h")],
)
def test_a_window_is_described_as_the_rule_file_wrote_it(
    tmp_path: Path, within: str, shown: str
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: SOON, trigger: payment_failed, channel: internal,\n"
        f"     after: {{event: signup_completed, within: {within}}}}}\n",
    )

    [rule] = load_ruleset(path).rules

    assert rule.after is not None and rule.after.span == shown


def test_rules_check_on_a_broken_file_names_the_file_rule_and_problem_and_exits_1(
    tmp_path: Path,
) -> None:
    path = write_rule_file(
        tmp_path,
        GOOD_RULE
        + "  - {id: SHOUT, trigger: signup_completed, channel: megaphone}\n"
        + "  - {id: LATE, trigger: signup_completed, channel: email, category: transactional,"
        " limit: sometimes, template: hello}\n",
    )

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 1
    assert f"{path}: 2 problem(s)" in result.output
    assert "rule SHOUT: unknown channel 'megaphone'" in result.output
    assert "rule LATE: unknown limit 'sometimes'" in result.output
    assert "OK:" not in result.output


def test_rules_check_lists_rule_and_delivery_problems_together_in_one_run(
    tmp_path: Path,
) -> None:
    path = write_broken_rule_file(tmp_path)

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 1
    assert f"{path}: {len(EVERY_PROBLEM)} problem(s)" in result.output
    assert beginnings(listed_problems(result.output)) == EVERY_PROBLEM


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
            "event signup_completed: unknown key `propertes` (known: description, properties)",
        ),
        (
            "  signup_completed:\n    properties:\n      amount: {type: number, minimun: 0}\n",
            "event signup_completed: property amount: unknown key `minimun`",
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
            "event signup_completed: property answer: `enum` value True is not of type string",
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
            "integer, boolean, object, array, got 'nummber'",
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
            "array, got 'strng'",
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
    assert "rule ODD: `template: ['a', 'b']` must name a folder beside the rule file" in problems


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


def test_a_file_loads_alike_whatever_was_checked_before_it(tmp_path: Path) -> None:
    # The first check stood text in for `meta.count` in the sample; the second, checking
    # arithmetic on it, was refused as adding text to a number.
    for name, body in [
        ("printed", "{{ event.properties.meta.count }}"),
        ("summed", "{{ event.properties.meta.count + 1 }} items"),
    ]:
        (tmp_path / name).mkdir()
        path = payment_email_rule_file(
            tmp_path / name, {"subject.txt": "Order", "body.txt": body}, "meta: object"
        )

        assert [rule.id for rule in load_ruleset(path).rules] == ["ORDER"]


def test_rules_check_says_where_messages_go_as_the_server_would_send_them(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "herald.db"
    result = CliRunner().invoke(
        app,
        ["rules", "check"],
        env={**WIDE, "HERALD_DATABASE_URL": f"sqlite:///{database}", "HERALD_RULES": None},
    )

    assert result.exit_code == 0, result.output
    delivery = result.output.split("\ndelivery\n")[1].splitlines()
    assert delivery[:3] == [
        f"  email: stub, {tmp_path / 'data' / 'outbox.jsonl'}",
        f"  sms: stub, {tmp_path / 'data' / 'outbox.jsonl'}",
        "  internal: log, WARNING lines in the log",
    ]
    assert delivery[3].startswith("  retries: 5 attempts at most")
