"""`herald rules check`: what it lists for a good file, which file it checks, how it
reports a broken one, and the delivery settings it shows beside the rules."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from herald.cli.main import app
from tests.support.rule_file_writing import GOOD_RULE, HELLO, WIDE, write_rule_file
from tests.support.rule_files import (
    EVERY_PROBLEM,
    beginnings,
    listed_problems,
    write_broken_rule_file,
)


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


def test_rules_check_shows_text_that_names_an_emoji_as_it_is(tmp_path: Path) -> None:
    # Rich printed `:x:` as an emoji, in the listing and in a problem alike.
    rule = GOOD_RULE + '    when: user.first_name != ":x:"\n'
    path = write_rule_file(tmp_path, rule)
    broken = write_rule_file(
        tmp_path / "b", rule.replace("trigger: signup_completed", "trigger: ':b:'")
    )

    listed = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)
    refused = CliRunner().invoke(app, ["rules", "check", str(broken)], env=WIDE)

    assert '  when user.first_name != ":x:"\n' in listed.output
    assert "`trigger: :b:` is not a declared event type" in refused.output


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


def test_rules_check_lists_a_rules_max_age(tmp_path: Path) -> None:
    path = write_rule_file(tmp_path, GOOD_RULE + "    max_age: 7d\n")

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 0, result.output
    assert "\n  only for a trigger at most 7d old\n" in result.output


def test_rules_check_lists_a_rule_s_description_and_a_condition_of_many_lines_under_it(
    tmp_path: Path,
) -> None:
    # The description, which GET /rules shows, was not listed; and a condition's second
    # line started at the margin, where it read as no part of the rule.
    rule = (
        GOOD_RULE
        + "    description: Welcome a new user [beta]\n"
        + "    when: |\n      // named users only\n      has(user.first_name)\n"
        + '        && user.first_name != ""\n'
    )
    path = write_rule_file(tmp_path, rule)

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)

    assert result.exit_code == 0, result.output
    assert (
        "once_per_event, template hello\n"
        "  Welcome a new user [beta]\n"
        "  when // named users only\n"
        "       has(user.first_name)\n"
        '         && user.first_name != ""\n'
    ) in result.output
