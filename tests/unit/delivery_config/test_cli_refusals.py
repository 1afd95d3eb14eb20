"""`herald rules check` and `herald serve` refuse, as an operator runs them, a rule file
whose delivery settings are wrong."""

from __future__ import annotations

from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.loader import default_rules_path
from tests.support.delivery_config import ENV, PLAINTEXT_AUTH
from tests.support.ports import free_port


def check_and_serve(
    tmp_path: Path, section: str, env: dict[str, str] | None = None
) -> tuple[Result, Result]:
    """``herald rules check`` and ``herald serve`` on the packaged rule file with ``section``
    added (one YAML line), as an operator would run them."""
    rules = tmp_path / "rules.yaml"
    text = default_rules_path().read_text(encoding="utf-8")
    rules.write_text(f"{text}\n{section}\n", encoding="utf-8")
    (tmp_path / "templates").symlink_to(default_rules_path().parent / "templates")
    runner, wide = CliRunner(), {"COLUMNS": "1000", **(env or {})}
    checked = runner.invoke(app, ["rules", "check", str(rules)], env=wide)
    database = f"sqlite:///{tmp_path / 'h.db'}"
    # On a free port: serve checks its port before the rule file, and a developer's own
    # `make run` holds the default one.
    port = str(free_port())
    served = runner.invoke(
        app, ["serve", "--rules", str(rules), "--database", database, "--port", port], env=wide
    )
    return checked, served


def test_rules_check_and_serve_refuse_a_webhook_ca_file_that_is_not_there(
    tmp_path: Path,
) -> None:
    sms = "{type: webhook, url: https://sms.example.com/send, ca_file: partner-ca.pem}"

    checked, served = check_and_serve(tmp_path, f"providers: {{sms: {sms}}}")

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert "providers.sms: `ca_file` 'partner-ca.pem' cannot be used: " in result.output
        assert "No such file or directory" in result.output


def test_rules_check_and_serve_refuse_logging_in_to_smtp_without_tls(tmp_path: Path) -> None:
    email = (
        "{type: smtp, host: smtp.example.com, sender: hello@example.com, "
        "username_env: SMTP_USER, password_env: SMTP_PASSWORD}"
    )

    checked, served = check_and_serve(tmp_path, f"providers: {{email: {email}}}", env=ENV)

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert PLAINTEXT_AUTH in result.output


def test_quiet_hours_written_unquoted_are_refused_saying_yaml_read_them_in_base_60(
    tmp_path: Path,
) -> None:
    # It said "1260 is a number": nothing in the file reads 1260.
    section = "delivery: {quiet_hours: {sms: {start: 21:00, end: 8:00}}}"

    checked, served = check_and_serve(tmp_path, section)

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert (
            "delivery.quiet_hours.sms.start: 1260 is a number: YAML reads 21:00 unquoted as"
            ' the number 1260 (base 60): quote it, "21:00"'
        ) in result.output
        assert (
            "delivery.quiet_hours.sms.end: 480 is a number: YAML reads 8:00 unquoted as"
            ' the number 480 (base 60): quote it, "8:00"'
        ) in result.output


def test_rules_check_and_serve_refuse_a_broken_delivery_section(tmp_path: Path) -> None:
    checked, served = check_and_serve(tmp_path, "delivery: {max_attempts: many}")

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert "delivery.max_attempts: 'many' is not a number" in result.output


def test_rules_check_and_serve_refuse_an_smtp_host_with_a_label_over_63_characters(
    tmp_path: Path,
) -> None:
    # It passed the check, and then every send raised UnicodeError, each message retried
    # with a traceback in the log until it was a dead letter.
    host = "a" * 64 + ".example"
    email = f"{{type: smtp, host: {host}, sender: hello@example.com}}"

    checked, served = check_and_serve(tmp_path, f"providers: {{email: {email}}}")

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert (
            "providers.email: `host` cannot be a DNS name: a label is over 63 characters, "
            f"got {host!r}"
        ) in result.output


def test_rules_check_and_serve_refuse_hosts_over_what_dns_can_look_up(tmp_path: Path) -> None:
    # They passed the check, and then every send failed at connect time.
    name = ".".join(["a" * 63] * 4)
    email = f"{{type: smtp, host: {name}, sender: hello@example.com}}"
    sms = f"{{type: webhook, url: 'https://{'a' * 64}.example/send'}}"

    checked, served = check_and_serve(tmp_path, f"providers: {{email: {email}, sms: {sms}}}")

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert "providers.email: `host` cannot be a DNS name: the name is over 253 characters" in (
            result.output
        )
        assert (
            "providers.sms: `url` has a host that cannot be a DNS name: a label is over 63 "
            "characters"
        ) in result.output
