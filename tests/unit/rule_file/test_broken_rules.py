"""A broken rule is refused naming the rule and the problem: each key of a rule checked
on its own, and conditions refused where YAML read them as something else."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.rules.loader import load_ruleset
from tests.support.rule_file_writing import GOOD_RULE, problems_of, write_rule_file

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
    "bad_max_age": (
        "  - id: BROKEN\n    trigger: payment_failed\n    channel: internal\n    max_age: 3 days\n",
        "rule BROKEN: `max_age: 3 days` is not a duration like 30m, 24h or 7d: write 3d",
    ),
    "max_age_of_zero": (
        "  - id: BROKEN\n    trigger: payment_failed\n    channel: internal\n    max_age: 0h\n",
        "rule BROKEN: `max_age: 0h` is no age: every trigger would be too old (the shortest "
        "age is 1s; write 1s, 30m, 24h or 7d)",
    ),
    "empty_max_age": (
        "  - id: BROKEN\n    trigger: payment_failed\n    channel: internal\n    max_age:\n",
        "rule BROKEN: `max_age` is empty: give a duration (72h, 7d), or remove the key",
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
        "rule BROKEN: template broken/body.txt line 3: unexpected '}'",
    ),
    "template_unknown_filter": (
        "  - {id: BROKEN, trigger: payment_failed, channel: email, category: transactional,"
        " template: money}\n",
        "rule BROKEN: template money/body.txt line 2: No filter named 'money'.",
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
        "rule BROKEN: template bare/body.txt uses nickname, which a template does not have",
    ),
}

TEMPLATES = {
    "broken": {"subject.txt": "Hi", "body.txt": "Hello,\n\n{{ user.first_name }\n"},
    "money": {"subject.txt": "Hi", "body.txt": "Paid:\n{{ event.properties.amount | money }}"},
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


@pytest.mark.parametrize("when", ["true", "false"])
def test_a_condition_yaml_reads_as_a_boolean_is_cel_s_own(when: str, tmp_path: Path) -> None:
    rule = f"  - {{id: ALWAYS, trigger: signup_completed, channel: internal, when: {when}}}\n"

    [rule] = load_ruleset(write_rule_file(tmp_path, rule)).rules

    assert rule.condition is not None
    assert rule.condition.source == when
    assert rule.condition.evaluate({"event": {}, "user": {}}).holds is (when == "true")


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


def test_a_rule_key_indented_less_than_its_rule_is_refused_saying_it_is_the_indentation(
    tmp_path: Path,
) -> None:
    # YAML says "expected <block end>, but found '?'", which names no indentation.
    path = write_rule_file(
        tmp_path, "  - id: R\n  trigger: signup_completed\n    channel: internal\n"
    )

    [problem] = problems_of(path)

    assert problem.startswith("not valid YAML: ")
    assert problem.endswith(
        "is not indented as YAML expects: the keys of one mapping, such as one rule's or"
        " one event's, start at the same column, and what a key holds is indented further"
        " than the key)"
    )


@pytest.mark.parametrize(
    "rule",
    [
        "  - id: R\n    trigger: signup_completed\n      channel: internal\n",
        "  - id: R\n    trigger: signup_completed\n    channel: internal\n"
        "    description: Note: internal only\n",
    ],
)
def test_a_key_yaml_cannot_start_there_is_refused_saying_how_to_write_it(
    rule: str, tmp_path: Path
) -> None:
    path = write_rule_file(tmp_path, rule)

    [problem] = problems_of(path)

    assert problem.startswith("not valid YAML: mapping values are not allowed here")
    assert problem.endswith(
        "as a key's, where none can start: a key there is indented further than the keys"
        " beside it, or a value holding `: ` must be quoted)"
    )


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        ("  - id: R\n\ttrigger: signup_completed\n    channel: internal\n", 12),
        ("  - id: R\n    trigger:\tsignup_completed\n    channel: internal\n", 12),
    ],
)
def test_a_tab_in_the_indentation_is_refused_saying_yaml_indents_with_spaces(
    rule: str, line: int, tmp_path: Path
) -> None:
    # YAML says "found character '\t' that cannot start any token": an editor shows a tab
    # as spaces, and no character to look for.
    path = write_rule_file(tmp_path, rule)

    [problem] = problems_of(path)

    assert problem.startswith("not valid YAML: while scanning for the next token")
    assert problem.endswith(
        f"(line {line} holds a tab where YAML reads indentation or the start of a value:"
        " YAML indents with spaces alone; replace the tab with spaces)"
    )


@pytest.mark.parametrize(
    ("key", "meant"),
    [("triger", "trigger"), ("chanel", "channel"), ("Template", "template"), ("when_", "when")],
)
def test_a_misspelt_rule_key_is_said_once_naming_the_key_it_looks_like(
    key: str, meant: str, tmp_path: Path
) -> None:
    # It was said twice, an unknown key and a needed one missing, naming neither as the
    # other: "unknown key `triger`" and "needs `trigger`".
    rule = {
        "trigger": "signup_completed",
        "channel": "email",
        "category": "transactional",
        "template": "hello",
        "when": "true",
    }
    rule[key] = rule.pop(meant)
    path = write_rule_file(
        tmp_path, "  - id: R1\n" + "".join(f"    {k}: {v}\n" for k, v in rule.items())
    )

    assert problems_of(path) == [
        f"rule R1: unknown key `{key}`: did you mean `{meant}`? (known: after, category,"
        " channel, description, id, limit, max_age, template, trigger, when)"
    ]


def test_a_rule_that_is_no_mapping_says_what_yaml_read(tmp_path: Path) -> None:
    # It said "needs an `id`" of a rule written as its name alone.
    path = write_rule_file(tmp_path, "  - WELCOME\n")

    assert problems_of(path) == [
        "rule #1: must be a mapping of its keys (id, trigger, channel, ...), but YAML read"
        " 'WELCOME': write `- id: WELCOME` and its other keys beneath"
    ]


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        (
            "{id: R, trigger: signup_complete, channel: internal}",
            "rule R: `trigger: signup_complete` is not a declared event type: did you mean "
            "`signup_completed`?",
        ),
        (
            "{id: R, trigger: payment_failed, channel: internal,"
            " after: {event: Signup_Completed, within: 24h}}",
            "rule R: `after.event: Signup_Completed` is not a declared event type: did you "
            "mean `signup_completed`?",
        ),
        (
            "{id: R, trigger: signup_completed, channel: emial, category: transactional,"
            " template: hello}",
            "rule R: unknown channel 'emial': did you mean `email`?",
        ),
        (
            "{id: R, trigger: signup_completed, channel: internal, limit: once_per_usr}",
            "rule R: unknown limit 'once_per_usr': did you mean `once_per_user`?",
        ),
        (
            "{id: R, trigger: signup_completed, channel: email, category: Marketting,"
            " template: hello}",
            "rule R: unknown category 'Marketting': did you mean `marketing`?",
        ),
    ],
    ids=["trigger", "anchor", "channel", "limit", "category"],
)
def test_a_value_spelt_like_a_known_one_names_it(tmp_path: Path, rule: str, said: str) -> None:
    """The known values are listed too, but the one meant is easy to miss among them."""
    assert any(
        said in problem for problem in problems_of(write_rule_file(tmp_path, f"  - {rule}\n"))
    )


@pytest.mark.parametrize(
    ("rule", "known"),
    [
        (
            "{id: R, trigger: signup_completed, channel: emial, category: transactional,"
            " template: hello}",
            "(known: email, sms, internal)",
        ),
        (
            "{id: R, trigger: signup_completed, channel: internal, limit: once_per_usr}",
            "(known: once_per_user, once_per_user_per_day, once_per_event)",
        ),
        (
            "{id: R, trigger: signup_completed, channel: internal, tempalte: hello}",
            "(known: after, category, channel, description, id, limit, max_age, template, "
            "trigger, when)",
        ),
    ],
    ids=["channel", "limit", "key"],
)
def test_the_known_values_are_listed_as_the_rule_file_writes_them(
    tmp_path: Path, rule: str, known: str
) -> None:
    """They were listed as Python prints a list, `(known: ['email', 'sms', 'internal'])`,
    where the other lists of the check read `(known: name, description, ...)`."""
    [problem] = problems_of(write_rule_file(tmp_path, f"  - {rule}\n"))

    assert problem.endswith(known), problem
