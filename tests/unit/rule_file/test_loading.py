"""Loading a rule file: the default and a valid custom file, how YAML is read (keys,
anchors, sections, encodings), and the versions it gives each rule and the whole file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.loader import RuleFileError, default_rules_path, load_ruleset
from tests.support.rule_file_writing import (
    EVENTS,
    GOOD_RULE,
    HELLO,
    WIDE,
    checked_problems,
    payment_email_rule_file,
    problems_of,
    redeclare,
    write_rule_file,
)
from tests.support.rule_files import listed_problems


def test_the_default_rule_file_loads_its_four_rules() -> None:
    ruleset = load_ruleset()

    assert [rule.id for rule in ruleset.rules] == [
        "WELCOME_EMAIL",
        "BANK_LINK_NUDGE_SMS",
        "INSUFFICIENT_FUNDS_EMAIL",
        "HIGH_RISK_ALERT",
    ]
    assert ruleset.source == str(default_rules_path())


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


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("0x10", "a number (16)"),
        ("12:30:00", "a number (45000)"),
        ("1.50", "a number (1.5)"),
        ("2026", "a number (2026)"),
        ("2026-01-15", "a date (2026-01-15)"),
    ],
)
def test_a_description_yaml_reads_as_a_number_or_a_date_is_refused_asking_to_quote_it(
    written: str, read: str, tmp_path: Path
) -> None:
    # Accepted, it was shown as YAML read it, not as written: 0x10 as 16, 12:30:00 as 45000.
    path = write_rule_file(tmp_path, GOOD_RULE + f"    description: {written}\n")
    redeclare(path, "signup_completed: {}", f"signup_completed: {{description: {written}}}")

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 1
    assert f"{path}: 2 problem(s)" in result.output
    assert listed_problems(result.output) == [
        f"event signup_completed: `description` must be text, but YAML read {read}: quote it",
        f"rule GOOD: `description` must be text, but YAML read {read}: quote it",
    ]


def _alias_bomb(levels: int) -> str:
    """YAML whose aliases expand it tenfold at each of ``levels`` levels: a few hundred
    bytes that read as ten to the power of ``levels`` values."""
    lines = ["x-level0: &level0 [lol]\n"]
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*level{level - 1}"] * 10)
        lines.append(f"x-level{level}: &level{level} [{aliases}]\n")
    return "".join(lines)


def test_a_rule_file_its_aliases_expand_past_a_bound_is_refused_quickly(
    tmp_path: Path,
) -> None:
    # Nine levels of ten aliases each: `rules check` and `serve` worked out the file's
    # version for over a minute, walking the billion values they expand to.
    path = tmp_path / "rules.yaml"
    path.write_text(EVENTS + "rules: []\n" + _alias_bomb(9), encoding="utf-8")

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 1
    assert f"{path}: 1 problem(s)" in result.output
    [problem] = listed_problems(result.output)
    assert problem.startswith("its YAML aliases expand it to more than 100,000 values")
    assert "Traceback" not in result.output


def test_an_alias_that_holds_itself_is_refused_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(EVENTS + "rules: []\nx-loop: &loop [*loop]\n", encoding="utf-8")

    [problem] = checked_problems(path)

    assert problem.startswith("the YAML anchor on line 11 holds an alias of itself")


def test_properties_shared_through_an_anchor_by_several_event_types_load(
    tmp_path: Path,
) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE)
    shared = "{properties: &money {amount: {type: number, required: true}}}"
    redeclare(path, "signup_completed: {}", f"signup_completed: {shared}")
    written_out = "properties:\n      amount: {type: number, required: true}"
    redeclare(path, written_out, "properties: *money")

    ruleset = load_ruleset(path)

    assert set(ruleset.event_types["signup_completed"].properties) == {"amount"}
    assert set(ruleset.event_types["payment_failed"].properties) == {"amount"}


def test_a_rule_file_nested_too_deeply_to_read_is_a_problem_not_a_traceback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(EVENTS + "rules: []\nx-deep: " + "[" * 5000 + "]" * 5000 + "\n")

    assert checked_problems(path) == ["nested too deeply for YAML to read"]


@pytest.mark.parametrize(
    ("declared", "where"),
    [
        ("{type: number, maximum: 100000000000000000000}", "events.payment_failed"),
        ("{type: number, enum: [1, -10000000000000000000]}", "events.payment_failed"),
    ],
)
def test_a_whole_number_too_large_to_hold_is_said_where_it_is(
    declared: str, where: str, tmp_path: Path
) -> None:
    # An amount in cents given a bound of twenty digits: "holds a value that cannot be
    # hashed: Integer exceeds 64-bit range" named neither the value nor its place.
    path = write_rule_file(tmp_path, GOOD_RULE)
    redeclare(path, "{type: number, required: true}", declared)
    number = declared.split(": ")[-1].strip("[]}").split(", ")[-1]

    [problem] = checked_problems(path)

    assert problem.startswith(f"{where}.properties.amount.")
    assert f": {number} is a whole number larger than a rule file may hold" in problem


def test_a_duplicate_rule_id_is_refused(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + GOOD_RULE)

    # It said "duplicate id" alone: in a long file, which two rules was left to find.
    assert problems_of(path) == ["rule GOOD (#2): duplicate id: rules #1 and #2 both have it"]


def test_each_problem_of_a_duplicated_id_says_which_of_its_rules_it_is_in(
    tmp_path: Path,
) -> None:
    # Each said `rule GOOD:` alone, leaving which of the two to guess.
    first = GOOD_RULE + "    when: user.age > 3\n"
    second = GOOD_RULE.replace("template: hello", "template: nope") + "    limit: weekly\n"
    path = write_rule_file(
        tmp_path, "  - {id: OTHER, trigger: signup_completed, channel: internal}\n" + first + second
    )

    problems = problems_of(path)

    assert [problem.partition(":")[0] for problem in problems] == [
        "rule GOOD (#3)",  # the duplicate id
        "rule GOOD (#3)",  # the limit
        "rule GOOD (#3)",  # the template
        "rule GOOD (#2)",  # the condition
    ]
    assert problems[0] == "rule GOOD (#3): duplicate id: rules #2 and #3 both have it"
    assert problems[2].startswith("rule GOOD (#3): template 'nope' not found")
    assert problems[3].startswith("rule GOOD (#2): `when: user.age > 3` uses user.age")


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


def test_a_key_merged_from_an_anchor_may_be_overridden(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - <<: {id: BASE, trigger: payment_failed, channel: internal}\n"
        "    trigger: signup_completed\n",
    )

    [rule] = load_ruleset(path).rules

    assert (rule.id, rule.trigger) == ("BASE", "signup_completed")


def test_a_key_starting_with_x_is_left_alone_for_yaml_anchors(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE)
    path.write_text("x-common: &email {channel: email}\n" + path.read_text())

    assert [rule.id for rule in load_ruleset(path).rules] == ["GOOD"]


NO_RULES = (
    "`rules` is missing or has nothing under it: list the rules, each starting with "
    "`- id:`, or write `rules: []` for a file that sends nothing"
)


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        # The dash left out: one rule as a mapping, refused as "`rules` must be a list".
        (
            "rules:\n  id: GOOD\n  trigger: signup_completed\n",
            "`rules` must be a list, got {'id': 'GOOD', 'trigger': 'signup_completed'}: list "
            "the rules, each starting with `- id:`",
        ),
        ("rules:\n", NO_RULES),
        ("", NO_RULES),
    ],
)
def test_a_rules_section_that_is_no_list_says_how_to_write_one(
    rules: str, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("events:\n  signup_completed: {}\n" + rules, encoding="utf-8")

    assert problems_of(path) == [problem]


def test_the_error_message_starts_with_the_file(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, "  - {id: BROKEN, trigger: signup_completed, channel: fax}\n")

    with pytest.raises(RuleFileError) as caught:
        load_ruleset(path)

    assert str(caught.value).startswith(f"{path}: rule BROKEN: unknown channel 'fax'")


def test_an_empty_list_of_rules_is_a_file_that_records_events_and_sends_nothing(
    tmp_path: Path,
) -> None:
    # Said on purpose, unlike a `rules:` left with nothing under it.
    path = tmp_path / "rules.yaml"
    path.write_text("events:\n  signup_completed: {}\nrules: []\n", encoding="utf-8")

    ruleset = load_ruleset(path)

    assert list(ruleset.rules) == []
    assert list(ruleset.event_types) == ["signup_completed"]


def test_a_missing_rule_file_is_reported_not_raised_as_a_crash(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "absent.yaml") == ["cannot read: No such file or directory"]


def test_a_folder_named_as_the_rule_file_is_told_apart_with_the_files_it_holds(
    tmp_path: Path,
) -> None:
    """`--rules rules/`, the folder that holds the rule file and its templates, said only
    "Is a directory"."""
    path = write_rule_file(tmp_path, GOOD_RULE)
    (tmp_path / "templates").mkdir(exist_ok=True)

    assert problems_of(tmp_path) == [f"a folder, not a rule file: name the file itself ({path})"]
    assert problems_of(tmp_path / "templates") == [
        "a folder, not a rule file: name the YAML file itself"
    ]


def test_a_rule_file_not_saved_as_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + "    description: Caf\u00e9\n")
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))
    line = path.read_bytes()[: path.read_bytes().index(b"\xe9")].count(b"\n") + 1

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 1
    assert listed_problems(result.output) == [
        f"the file is not UTF-8 text (byte 0xe9 on line {line}): save it as UTF-8"
    ]


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


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty: a rule file is a YAML mapping with `events` and `rules`"),
        (
            "# rules to come\n\n",
            "the file holds no YAML but comments: a rule file is a YAML mapping with `events`"
            " and `rules`",
        ),
        (
            "- id: WELCOME\n  trigger: signup_completed\n",
            "must be a mapping with `events` and `rules`, but YAML read a list",
        ),
    ],
)
def test_a_file_with_no_mapping_says_what_it_holds(text: str, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")

    assert problems_of(path) == [problem]
