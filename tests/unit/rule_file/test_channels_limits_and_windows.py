"""What a rule says about delivery: who it messages, whether it is marketing, its
template, its limit and its window, and how `herald rules check` shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.definition import Category
from herald.rules.loader import load_ruleset
from tests.support.rule_file_writing import WIDE, problems_of, write_rule_file


def test_only_rules_limited_once_per_user_are_lifetime_rules() -> None:
    ruleset = load_ruleset()

    assert ruleset.lifetime_rules() == {"WELCOME_EMAIL", "BANK_LINK_NUDGE_SMS"}


def test_both_keys_of_a_window_are_checked_in_one_run(tmp_path: Path) -> None:
    # Only the event type was: a misspelt window unit came to light on the next run.
    path = write_rule_file(
        tmp_path,
        "  - {id: NUDGE, trigger: signup_completed, channel: internal,"
        " after: {event: bank_linked, within: 2w}}\n",
    )

    assert problems_of(path) == [
        # Named with the declared ones, as a trigger is: which spelling is it?
        "rule NUDGE: `after.event: bank_linked` is not a declared event type"
        " (['payment_failed', 'signup_completed'])",
        "rule NUDGE: `after.within: 2w` is not a duration like 30m, 24h or 7d: write 14d",
    ]


@pytest.mark.parametrize(
    ("within", "instead"),
    [
        ("24 hours", "24h"),
        ("2 Days", "2d"),
        ("90min", "90m"),
        ("1 sec", "1s"),
        # Weeks, fractions and two units, which CEL's durations and people write.
        ("1w", "7d"),
        ("2 weeks", "14d"),
        ("1.5h", "90m"),
        ("0.5d", "12h"),
        ("1h30m", "90m"),
        ("1d 12h", "36h"),
        ("2h0m", "2h"),
    ],
)
def test_a_window_spelt_out_is_refused_saying_how_to_write_it(
    within: str, instead: str, tmp_path: Path
) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: NUDGE, trigger: signup_completed, channel: internal,"
        f" after: {{event: payment_failed, within: {within}}}}}\n",
    )

    assert problems_of(path) == [
        f"rule NUDGE: `after.within: {within}` is not a duration like 30m, 24h or 7d:"
        f" write {instead}"
    ]


def test_a_window_of_a_number_alone_is_refused_asking_for_its_unit(tmp_path: Path) -> None:
    path = write_rule_file(
        tmp_path,
        "  - {id: NUDGE, trigger: signup_completed, channel: internal,"
        " after: {event: payment_failed, within: 24}}\n",
    )

    assert problems_of(path) == [
        "rule NUDGE: `after.within: 24` is not a duration like 30m, 24h or 7d: a number"
        " alone has no unit: write 24s, 24m, 24h or 24d"
    ]


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        (
            "channel",
            "[email, sms]",
            "`channel` takes one channel, not a list: write a rule for each of email and sms,"
            " each with an id of its own",
        ),
        (
            "trigger",
            "[signup_completed, payment_failed]",
            "`trigger` takes one event type, not a list: write a rule for each of"
            " signup_completed and payment_failed, each with an id of its own",
        ),
        (
            "channel",
            "[email]",
            "`channel` takes one channel, not a list: write `channel: email`",
        ),
        (
            "limit",
            "",
            "`limit` is empty: write once_per_event (the default), once_per_user or"
            " once_per_user_per_day, or remove the key",
        ),
    ],
)
def test_a_key_given_a_list_or_nothing_says_what_it_takes(
    key: str, value: str, said: str, tmp_path: Path
) -> None:
    rule = {"trigger": "signup_completed", "channel": "internal", key: value}
    path = write_rule_file(
        tmp_path, "  - id: ALERT\n" + "".join(f"    {k}: {v}\n" for k, v in rule.items())
    )

    assert problems_of(path) == [f"rule ALERT: {said}"]


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


@pytest.mark.parametrize(
    ("when", "body", "alternative"),
    [
        (
            "event.properties.amount > 100.0",
            "Paid",
            ", or test it first with has(event.properties.amount)",
        ),
        (None, "{{ event.properties.amount }}", ""),
    ],
)
def test_reading_the_after_event_s_property_says_the_rule_reads_its_trigger_alone(
    when: str | None, body: str, alternative: str, tmp_path: Path
) -> None:
    # Advised only to declare it for the trigger, the author took the window's event for
    # one the rule reads: its properties are declared already, where they belong.
    condition = f"    when: {when}\n" if when else ""
    path = write_rule_file(
        tmp_path,
        "  - id: FAST_SIGNUP\n"
        "    trigger: signup_completed\n"
        "    after: {event: payment_failed, within: 1h}\n"
        f"{condition}"
        "    channel: email\n"
        "    category: transactional\n"
        "    template: paid\n",
        {"paid": {"subject.txt": "Paid", "body.txt": body}},
    )

    [problem] = problems_of(path)

    assert problem.endswith(
        "uses event.properties.amount, which the rule file does not declare for"
        " signup_completed events (amount is a property of payment_failed, the rule's `after`"
        " event, but a rule's condition and template read its trigger's event alone; declare"
        f" it under events: signup_completed: properties:{alternative})"
    )
