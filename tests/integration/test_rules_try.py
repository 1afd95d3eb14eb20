"""`herald rules try EVENTS`: what a rule file decides for sample events and the messages
it would send, decided as the server decides them, with nothing stored or sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.rules.loader import default_rules_path

SIGNUP = {
    "event_id": "s1",
    "user_id": "u_1",
    "event_type": "signup_completed",
    "event_timestamp": "2025-11-03T10:00:00Z",
    "user_traits": {
        "email": "ada@example.com",
        "first_name": "Ada",
        "marketing_opt_in": True,
        "phone": "+351910000001",
        "timezone": "Europe/Lisbon",
    },
}
LINK = {
    "event_id": "l1",
    "user_id": "u_1",
    "event_type": "link_bank_success",
    "event_timestamp": "2025-11-04T09:00:00Z",
}


def shortfall(event_id: str, hour: int, attempt: int) -> dict[str, Any]:
    properties = {"amount": 12.5, "attempt_number": attempt, "failure_reason": "INSUFFICIENT_FUNDS"}
    return {
        "event_id": event_id,
        "user_id": "u_1",
        "event_type": "payment_failed",
        "event_timestamp": f"2025-11-04T{hour:02d}:00:00Z",
        "properties": properties,
    }


def try_rules(tmp_path: Path, events: Any, *options: str, raw: str | None = None) -> Any:
    """``herald rules try`` on a file holding ``events`` (JSON lines when a list), run
    in ``tmp_path``."""
    path = tmp_path / "events.json"
    lines = [json.dumps(event) for event in events] if isinstance(events, list) else None
    path.write_text(raw if raw is not None else "\n".join(lines or [json.dumps(events)]))
    return CliRunner().invoke(cli, ["rules", "try", str(path), *options], env={"COLUMNS": "300"})


def test_it_shows_each_decision_and_the_messages_it_would_send(tmp_path: Path) -> None:
    events = [SIGNUP, LINK, shortfall("p1", 10, 3), shortfall("p2", 11, 4)]

    result = try_rules(tmp_path, events)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "   -> email to ada@example.com: Welcome aboard, Ada! (and an HTML part)" in lines
    assert "      Hi Ada," in lines
    assert any(
        line.startswith("   BANK_LINK_NUDGE_SMS triggered: signup_completed s1") for line in lines
    )
    assert "   -> sms to +351910000001: Bank linked" in lines
    assert "      Your payment of 12.50 failed because the account had insufficient funds." in lines
    assert "   -> an internal alert, logged: High risk: user u_1 failed payment attempt 3" in lines
    assert sum("suppressed: " in line for line in lines) == 2  # p2: both daily limits held
    assert (
        lines[-1] == "4 events: 4 messages would be sent, 0 rejected (nothing was stored or sent)"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.json"]


def test_text_that_names_an_emoji_is_shown_as_it_would_be_sent(tmp_path: Path) -> None:
    # `:b:` and `:wave:` are emoji names to Rich, which printed them as emoji.
    signup = {**SIGNUP, "user_id": "b"}
    signup["user_traits"] = {**SIGNUP["user_traits"], "first_name": ":wave:"}
    late = {**shortfall("p1", 10, 1), "user_id": "b"}

    result = try_rules(tmp_path, [signup, late, {**late, "event_id": "p2"}])

    assert result.exit_code == 0, result.output
    assert "   -> email to ada@example.com: Welcome aboard, :wave:! (and an HTML part)" in (
        result.output.splitlines()
    )
    assert "dedup key INSUFFICIENT_FUNDS_EMAIL:b:2025-11-04 is held by" in result.output


def test_a_link_before_its_signup_is_decided_when_the_signup_arrives(tmp_path: Path) -> None:
    result = try_rules(tmp_path, [LINK, SIGNUP], "--json")

    link, signup = (json.loads(line) for line in result.output.splitlines())
    assert [d["outcome"] for d in link["decisions"]] == ["skipped"]
    nudge = next(d for d in signup["decisions"] if d["rule"] == "BANK_LINK_NUDGE_SMS")
    assert nudge["outcome"] == "triggered"
    assert {m["rule"] for m in signup["messages"]} == {"WELCOME_EMAIL", "BANK_LINK_NUDGE_SMS"}


def test_a_rejected_event_says_why_the_others_are_decided_and_it_exits_1(tmp_path: Path) -> None:
    typo = {**shortfall("p1", 10, 1), "event_type": "payment_faild"}

    result = try_rules(tmp_path, [typo, SIGNUP])

    assert result.exit_code == 1
    assert "1. rejected p1:" in result.output
    assert "   event_type: unknown event type 'payment_faild'; supported: " in result.output
    assert "2. accepted s1" in result.output


def test_a_sample_that_reuses_an_event_id_is_rejected_saying_so_and_it_exits_1(
    tmp_path: Path,
) -> None:
    # A sample copied and changed, its event_id left as it was: not decided, and it was
    # shown as a bare "conflict", counted with none rejected, and the command exited 0.
    copied = {**SIGNUP, "event_timestamp": "2025-11-05T10:00:00Z"}

    result = try_rules(tmp_path, [SIGNUP, copied])

    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "2. rejected s1:" in lines
    assert "   event_id: already used for a different payload" in result.output
    assert lines[-1].endswith("1 rejected (nothing was stored or sent)")


@pytest.mark.parametrize(
    "written",
    [
        json.dumps({"events": [SIGNUP, LINK]}),
        json.dumps([SIGNUP, LINK]),
        json.dumps(SIGNUP, indent=2) + "\n",
        f"{json.dumps(SIGNUP)}\n\n{json.dumps(LINK)}\n",
    ],
    ids=["batch", "list", "one event", "json lines"],
)
def test_it_reads_a_batch_a_list_one_event_or_json_lines(tmp_path: Path, written: str) -> None:
    result = try_rules(tmp_path, None, "--json", raw=written)

    assert result.exit_code == 0, result.output
    statuses = [json.loads(line)["event_id"] for line in result.output.splitlines()]
    assert statuses == (["s1"] if written.count("event_id") == 1 else ["s1", "l1"])


def test_a_dash_reads_the_events_from_stdin() -> None:
    result = CliRunner().invoke(cli, ["rules", "try", "-", "--json"], input=json.dumps(SIGNUP))

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["event_id"] == "s1"


def test_json_output_has_each_message_whole(tmp_path: Path) -> None:
    result = try_rules(tmp_path, [SIGNUP], "--json")

    [line] = result.output.splitlines()
    welcome = json.loads(line)["messages"][0]
    assert welcome["recipient"] == "ada@example.com"
    assert welcome["body"].endswith("you can unsubscribe at any time.")
    assert welcome["html"].startswith("<p>Hi Ada,</p>")


def test_a_message_due_in_quiet_hours_is_shown_held(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        default_rules_path().read_text(encoding="utf-8")
        + f"templates_dir: {default_rules_path().parent / 'templates'}\n"
        + "delivery:\n  quiet_hours: {sms: {start: '00:00', end: '23:59'}}\n",
        encoding="utf-8",
    )

    result = try_rules(tmp_path, [SIGNUP, LINK], "--rules", str(rules), "--json")

    [nudge] = json.loads(result.output.splitlines()[1])["messages"]
    assert "quiet hours" in nudge["hold_reason"]


def test_a_file_whose_providers_name_secrets_not_set_here_is_tried(tmp_path: Path) -> None:
    # Nothing is sent: the production file is tried without its SMTP login or signing key.
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        default_rules_path().read_text(encoding="utf-8")
        + f"templates_dir: {default_rules_path().parent / 'templates'}\n"
        + "providers:\n"
        + "  email: {type: smtp, host: smtp.example.com, port: 587, tls: starttls,"
        + " sender: hello@example.com, username_env: TRIED_SMTP_USER,"
        + " password_env: TRIED_SMTP_PASSWORD}\n"
        + "  sms: {type: webhook, url: 'https://sms.example.com/send',"
        + " secret_env: TRIED_SMS_SECRET}\n",
        encoding="utf-8",
    )

    result = try_rules(tmp_path, [SIGNUP], "--rules", str(rules))

    assert result.exit_code == 0, result.output
    assert "   -> email to ada@example.com: Welcome aboard, Ada! (and an HTML part)" in (
        result.output.splitlines()
    )


def test_an_alert_is_said_to_go_where_the_internal_provider_sends_it(tmp_path: Path) -> None:
    # "logged" was said of every alert, one only a webhook takes too.
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        default_rules_path().read_text(encoding="utf-8")
        + f"templates_dir: {default_rules_path().parent / 'templates'}\n"
        + "providers:\n  internal: {type: webhook, url: 'https://chat.example.com/hooks/risk'}\n",
        encoding="utf-8",
    )

    result = try_rules(tmp_path, [shortfall("p1", 10, 3)], "--rules", str(rules))

    assert "   -> an internal alert, posted: High risk: user u_1 failed payment attempt 3" in (
        result.output.splitlines()
    )


def test_unreadable_input_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = CliRunner().invoke(cli, ["rules", "try", str(tmp_path / "none.json")])
    garbled = try_rules(tmp_path, None, raw=f"{json.dumps(SIGNUP)}\n{{not json\n")

    assert missing.exit_code == 2
    assert "cannot read" in missing.output and "No such file or directory" in missing.output
    assert garbled.exit_code == 2
    assert "events.json, line 2: not JSON" in garbled.output


def test_a_pretty_printed_file_that_is_not_json_names_the_line_at_fault(tmp_path: Path) -> None:
    # A comma left after the last key, as one written by hand often has: the file is one
    # document, so the line to fix is the document's, not its first line read alone.
    written = json.dumps([SIGNUP], indent=2).replace('"timezone": "Europe/Lisbon"', '"tz": 1,')
    at_fault = next(n for n, line in enumerate(written.splitlines(), 1) if '"tz": 1,' in line)

    result = try_rules(tmp_path, None, raw=written)

    assert result.exit_code == 2
    assert f"events.json, line {at_fault}: not JSON (trailing comma" in result.output


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_file_not_saved_as_utf8_is_said_to_be_so(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(json.dumps({**SIGNUP, "user_id": "u_é"}, ensure_ascii=False).encode(encoding))

    result = CliRunner().invoke(cli, ["rules", "try", str(path)])

    assert result.exit_code == 2
    assert "events.json is not UTF-8 text" in result.output
    assert "save it as UTF-8" in result.output


def test_a_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Some editors save UTF-8 with a byte order mark, as they do a template.
    path = tmp_path / "events.json"
    path.write_bytes(json.dumps(SIGNUP).encode("utf-8-sig"))

    result = CliRunner().invoke(cli, ["rules", "try", str(path), "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["event_id"] == "s1"


def test_a_sample_dated_in_the_future_is_rejected_as_the_server_would(tmp_path: Path) -> None:
    ahead = {**SIGNUP, "event_timestamp": "2099-01-01T00:00:00Z"}

    result = try_rules(tmp_path, [ahead])

    assert result.exit_code == 1
    assert "1. rejected s1:" in result.output
    assert "days ahead of Herald's clock" in result.output


def test_a_rule_whose_map_is_too_long_to_evaluate_is_shown_skipped_saying_why(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events:\n  order_placed:\n    properties:\n      items: {type: array}\n"
        "rules:\n  - id: MANY_DOUBLED\n    trigger: order_placed\n    channel: internal\n"
        "    when: event.properties.items.map(i, i * 2).filter(d, d > 10).size() > 2\n",
        encoding="utf-8",
    )
    order = {
        "event_id": "o1",
        "user_id": "u_1",
        "event_type": "order_placed",
        "event_timestamp": "2025-11-03T10:00:00Z",
        "properties": {"items": list(range(50_000))},
    }

    result = try_rules(tmp_path, order, "--rules", str(rules))

    assert result.exit_code == 0, result.output
    assert (
        "was not evaluated: its `event.properties.items.map(i, ...)` would take "
        "2,500,000,000 steps over the 50,000 items of event.properties.items, more than the "
        "250,000 a condition may take" in result.output
    )


def test_a_condition_of_many_lines_is_shown_under_its_decision(tmp_path: Path) -> None:
    # Its further lines started at the margin, where they read as no part of the decision.
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events:\n  ping: {}\nrules:\n  - id: R\n    trigger: ping\n    channel: internal\n"
        "    when: |\n      // the user's own pings\n      event.user_id == user.id\n",
        encoding="utf-8",
    )
    ping = {"user_id": "u_1", "event_type": "ping", "event_timestamp": "2025-11-03T10:00:00Z"}

    result = try_rules(tmp_path, ping, "--rules", str(rules))

    assert result.exit_code == 0, result.output
    assert (
        "   R triggered: `// the user's own pings\n"
        "     event.user_id == user.id` is true (event.user_id is"
    ) in result.output
