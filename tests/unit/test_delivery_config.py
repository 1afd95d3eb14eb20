"""The `providers` and `delivery` sections of a rule file: a working plan, or one error that
names every wrong setting, never a traceback at start-up."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from herald.cli.main import app
from herald.delivery.setup import DeliveryConfigError, DeliveryPlan, build_delivery
from herald.delivery.smtp import SmtpProvider
from herald.rules.loader import default_rules_path

ENV = {"SMTP_USER": "herald", "SMTP_PASSWORD": "secret", "SMS_WEBHOOK_SECRET": "s3cret"}
FULL = {
    "providers": {
        "email": {
            "type": "smtp",
            "host": "smtp.example.com",
            "port": 587,
            "starttls": True,
            "sender": "hello@example.com",
            "reply_to": "help@example.com",
            "username_env": "SMTP_USER",
            "password_env": "SMTP_PASSWORD",
        },
        "sms": {
            "type": "webhook",
            "url": "https://sms.example.com/send",
            "secret_env": "SMS_WEBHOOK_SECRET",
        },
        "internal": {"type": "log", "webhook": {"url": "https://chat.example.com/hooks/risk"}},
    },
    "delivery": {
        "max_attempts": 5,
        "backoff_seconds": 2,
        "rate_limits": {"sms": 10},
        "quiet_hours": {"sms": {"start": "21:00", "end": "08:00"}},
    },
}


def build(document: dict[str, Any]) -> DeliveryPlan:
    return build_delivery(document, outbox=Path("outbox.jsonl"), env=ENV)


def test_the_documented_configuration_builds_every_provider() -> None:
    plan = build(FULL)

    assert {name: p.name for name, p in plan.providers.items()} == {
        "email": "email:smtp",
        "sms": "sms:webhook",
        "internal": "internal:log+webhook",
    }
    assert plan.retry.max_attempts == 5 and plan.rates == {"sms": (10.0, 10)}


def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(FULL)
    parent: Any = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("providers", "email", "port"), "abc", "providers.email.port: 'abc' is not a number"),
        # What YAML makes of rate_limits: {sms: 1e3}, which looks like a number to a reader.
        (
            ("delivery", "rate_limits", "sms"),
            "1e3",
            "delivery.rate_limits.sms: '1e3' is not a number (YAML reads a number like 1e9 as "
            "text: write it in full, or as 1.0e+9)",
        ),
        (("providers", "email", "port"), 0, "providers.email.port: must be a whole number"),
        (("providers", "email", "host"), None, "providers.email: needs `host`"),
        (("providers", "pager"), {"type": "stub"}, "providers.pager: unknown channel 'pager'"),
        # Hosts no socket connects to, which retried every email until it was a dead letter.
        (
            ("providers", "email", "host"),
            "smtp.example.com:587",
            "providers.email: `host` must be a host name or an IP address alone (no scheme, "
            "port, brackets or spaces; the port goes in `port`), got 'smtp.example.com:587'",
        ),
        (("providers", "email", "host"), "smtp://smtp.example.com", "must be a host name"),
        (("providers", "email", "host"), "[2001:db8::25]", "must be a host name"),
        (("providers", "email", "host"), "smtp.example.com ", "must be a host name"),
        (("providers", "sms", "url"), "sms.example.com", "must be an http:// or https:// URL"),
        (("providers", "sms", "secret_env"), "NOPE", "environment variable NOPE (for secret)"),
        (("providers", "sms", "type"), "carrier-pigeon", "unknown type 'carrier-pigeon'"),
        # Each setting was called an unknown key, when the `type` they go with was missing.
        (
            ("providers", "email"),
            {"host": "smtp.example.com", "port": 587, "sender": "hello@example.com"},
            "providers.email: `host`, `port`, `sender` set without a `type`, so the channel "
            "keeps its default, stub, which takes none of them: add `type: smtp`",
        ),
        (
            ("providers", "sms"),
            {"url": "https://sms.example.com/send"},
            "providers.sms: `url` set without a `type`, so the channel keeps its default, "
            "stub, which takes none of them: add `type: webhook`",
        ),
        # Accepted, they made every sms or alert a dead letter: neither has an email address.
        (
            ("providers", "sms"),
            {"type": "smtp", "host": "smtp.example.com", "sender": "hello@example.com"},
            "providers.sms: `type: smtp` is for the email channel; an sms goes to the user's "
            "phone number: use webhook or stub",
        ),
        (
            ("providers", "internal"),
            {"type": "smtp", "host": "smtp.example.com", "sender": "hello@example.com"},
            "providers.internal: `type: smtp` is for the email channel; an internal alert goes "
            "to the team, not to an address: use log, webhook or stub",
        ),
        # Accepted, each user message was logged as "internal alert ...", its subject alone.
        (
            ("providers", "email"),
            {"type": "log"},
            "providers.email: `type: log` is for internal alerts: it logs an alert's subject "
            "and sends the user nothing; use stub to record email messages in a file, or smtp "
            "or webhook to send them",
        ),
        (
            ("providers", "sms"),
            {"type": "log"},
            "providers.sms: `type: log` is for internal alerts: it logs an alert's subject and "
            "sends the user nothing; use stub to record sms messages in a file, or webhook to "
            "send them",
        ),
        (("providers", "internal", "webhook"), ["x"], "providers.internal.webhook: must be"),
        (("delivery", "max_attempts"), 0, "delivery.max_attempts: must be a whole number"),
        # YAML reads `yes` as a boolean: said in YAML's spelling, not Python's `True`.
        (("delivery", "max_attempts"), True, "delivery.max_attempts: true is not a number"),
        (("delivery", "rate_limits", "sms"), -1, "delivery.rate_limits.sms: must be a number"),
        (("delivery", "quiet_hours", "sms"), "21-8", "delivery.quiet_hours.sms: must be a map"),
        (("delivery", "quiet_hours", "sms", "end"), "8pm", "'8pm' is not a time like 21:00"),
        (("delivery",), [1], "delivery: must be a mapping"),
        # Read in the user's timezone: an alert to the team would wait for the user's morning.
        (
            ("delivery", "quiet_hours", "internal"),
            {"start": "21:00", "end": "08:00"},
            "delivery.quiet_hours.internal: quiet hours are the user's, in their timezone; an "
            "internal alert goes to the team and is not held for them",
        ),
        # Its settings commented out, sms went to the development stub without a word.
        (
            ("providers", "sms"),
            None,
            "providers.sms: empty: give its settings, e.g. {type: webhook, url: ...}, or "
            "remove it to keep the default, stub",
        ),
        (
            ("providers", "email", "port"),
            99999,
            "providers.email.port: must be a whole number from 1 to 65535, got 99999",
        ),
        (
            ("providers", "email", "sender"),
            "hello",
            "providers.email: `sender` must be an email address",
        ),
        (("providers", "email", "reply_to"), "help desk", "`reply_to` must be an email address"),
        # A send longer than this would be cut off by the dispatcher's 60 s claim anyway.
        (("providers", "sms", "timeout"), 45, "providers.sms.timeout: must be a number from"),
        (
            ("providers", "email", "starttls"),
            "false",
            "`starttls` must be true or false, got 'false'",
        ),
        (("providers", "email", "prot"), 25, "providers.email: unknown key `prot`"),
        (
            ("providers", "email", "tls"),
            "ssl",
            "providers.email: `tls` must be one of none, starttls, implicit, got 'ssl'",
        ),
        (
            ("providers", "email", "tls"),
            "implicit",
            "providers.email: `starttls: true` contradicts `tls: implicit`; keep `tls` alone",
        ),
        (
            ("providers", "email", "ca_file"),
            "/nonexistent/ca.pem",
            "providers.email: `ca_file` '/nonexistent/ca.pem' cannot be used: [Errno 2]",
        ),
        (
            ("providers", "sms", "url"),
            "https://",
            "`url` must be an http:// or https:// URL with a host",
        ),
        # URLs the HTTP client refuses at send time, which would dead-letter every message:
        # a port typo, a port out of range, the line break a YAML block scalar ends with.
        (("providers", "sms", "url"), "https://h.example.com:443x/t0k", "a numeric port"),
        (("providers", "sms", "url"), "https://h.example.com:99999/t0k", "a numeric port"),
        (("providers", "sms", "url"), "https://h.example.com/t0k\n", "and no whitespace"),
        (("providers", "sms", "url"), "https://h.example .com/t0k", "and no whitespace"),
        (
            ("delivery", "backoff_seconds"),
            0,
            "delivery.backoff_seconds: must be a number of at least 0.001",
        ),
        (
            ("delivery", "max_backoff_seconds"),
            1e12,
            "must be a number from 0 to 31536000, got 1000000000000.0",
        ),
        (("delivery", "max_attempt"), 3, "delivery: unknown key `max_attempt`"),
        (
            ("delivery", "quiet_hours", "sms", "start"),
            1260,
            "sms.start: 1260 is a number: quote the time",
        ),
        (
            ("delivery", "quiet_hours", "sms", "end"),
            "08:00+01:00",
            "sms.end: '08:00+01:00' has a UTC offset",
        ),
    ],
)
def test_a_wrong_setting_is_named_in_the_error(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    with pytest.raises(DeliveryConfigError) as caught:
        build(changed(path, value))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("channel", "key"), [("email", "sender"), ("email", "host"), ("sms", "url")]
)
def test_a_required_setting_left_out_is_said_to_be_needed(channel: str, key: str) -> None:
    # It was "`sender` must be a non-empty string, got None": Python's word for nothing.
    document = copy.deepcopy(FULL)
    del document["providers"][channel][key]

    with pytest.raises(DeliveryConfigError) as caught:
        build(document)

    assert f"providers.{channel}: needs `{key}`" in str(caught.value)
    assert "None" not in str(caught.value)


def test_every_wrong_setting_is_named_in_one_error() -> None:
    document = copy.deepcopy(FULL)
    document["providers"]["email"].update(port=99999, sender="hello")
    document["providers"]["sms"].update(url="sms.example.com", secret_env="NOPE")
    document["delivery"].update(max_attempts=0, backoff_seconds=0)
    document["delivery"]["quiet_hours"]["sms"]["end"] = "8pm"

    with pytest.raises(DeliveryConfigError) as caught:
        build(document)

    assert caught.value.problems == [
        "providers.email.port: must be a whole number from 1 to 65535, got 99999",
        "providers.email: `sender` must be an email address like hello@example.com, got 'hello'",
        "providers.sms: `url` must be an http:// or https:// URL with a host, a numeric port "
        "if any, and no whitespace",
        "providers.sms: environment variable NOPE (for secret) is not set",
        "delivery.max_attempts: must be a whole number of at least 1, got 0",
        "delivery.backoff_seconds: must be a number of at least 0.001, got 0",
        "delivery.quiet_hours.sms.end: '8pm' is not a time like 21:00",
    ]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("providers", "internal", "webhook"),
            "https://chat.example.com/hooks/T0K3N",
            "providers.internal.webhook: must be a mapping, got a URL (not repeated here",
        ),
        (("providers", "sms"), "https://sms.example.com/send?key=T0K3N", "must be a mapping"),
        (("providers", "sms", "url"), ["https://sms.example.com/T0K3N"], "non-empty string"),
    ],
)
def test_a_webhook_url_in_the_wrong_place_is_not_repeated_in_the_error(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    # The token in the URL went to the check's output and the start-up log.
    with pytest.raises(DeliveryConfigError) as caught:
        build(changed(path, value))

    assert message in str(caught.value) and "T0K3N" not in str(caught.value)


def test_a_secret_set_to_nothing_is_a_problem() -> None:
    # `SMS_WEBHOOK_SECRET=` in an env file: the webhook went out unsigned, and the SMTP
    # login sent an empty password, from a file the check had passed.
    empty = {name: "" for name in ENV}

    with pytest.raises(DeliveryConfigError) as caught:
        build_delivery(FULL, outbox=Path("outbox.jsonl"), env=empty)

    assert caught.value.problems == [
        "providers.email: environment variable SMTP_USER (for username) is empty",
        "providers.email: environment variable SMTP_PASSWORD (for password) is empty",
        "providers.sms: environment variable SMS_WEBHOOK_SECRET (for secret) is empty",
    ]


@pytest.mark.parametrize("host", ["smtp.example.com", "mail_relay", "2001:db8::25", "10.0.0.25"])
def test_a_host_may_be_any_name_or_address(host: str) -> None:
    email = build(changed(("providers", "email", "host"), host)).providers["email"]

    assert isinstance(email, SmtpProvider) and email.host == host


def test_a_sender_may_carry_a_display_name() -> None:
    plan = build(changed(("providers", "email", "sender"), "Herald <hello@example.com>"))

    email = plan.providers["email"]
    assert isinstance(email, SmtpProvider) and email.sender == "Herald <hello@example.com>"


@pytest.mark.parametrize("key", ["sender", "reply_to"])
@pytest.mark.parametrize(
    "addresses",
    ["hello@example.com, ops@example.com", "Herald <hello@example.com>; ops@example.com"],
)
def test_a_sender_or_reply_to_of_several_addresses_is_a_problem(key: str, addresses: str) -> None:
    # Only the first address was checked, and the email went out with a From of two.
    with pytest.raises(DeliveryConfigError) as caught:
        build(changed(("providers", "email", key), addresses))

    # (Python's own address parser refuses some such lists itself, in newer releases.)
    [problem] = caught.value.problems
    assert problem.startswith(f"providers.email: `{key}` must be ")
    assert problem.endswith(f"got {addresses!r}")


def smtp_settings(**settings: Any) -> dict[str, Any]:
    """FULL with the email provider's settings changed; ``None`` removes one."""
    document = copy.deepcopy(FULL)
    email = document["providers"]["email"]
    email.update(settings)
    document["providers"]["email"] = {k: v for k, v in email.items() if v is not None}
    return document


@pytest.mark.parametrize(
    ("settings", "tls", "port"),
    [
        ({"starttls": None, "plaintext_auth": True}, "none", 587),
        ({}, "starttls", 587),  # `starttls: true`, the older spelling
        ({"starttls": None, "tls": "starttls"}, "starttls", 587),
        ({"starttls": None, "tls": "implicit", "port": None}, "implicit", 465),
        ({"starttls": None, "tls": "none", "port": None, "plaintext_auth": True}, "none", 25),
    ],
)
def test_the_smtp_connection_is_protected_as_tls_says(
    settings: dict[str, Any], tls: str, port: int
) -> None:
    email = build(smtp_settings(**settings)).providers["email"]

    assert isinstance(email, SmtpProvider) and (email.tls, email.port) == (tls, port)


def test_a_ca_file_without_tls_is_a_problem(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not read")

    with pytest.raises(DeliveryConfigError) as caught:
        build(smtp_settings(starttls=None, ca_file=str(ca_file)))

    assert "providers.email: `ca_file` is for TLS: set `tls: starttls` or `tls: implicit`" in (
        caught.value.problems
    )


def test_a_ca_file_without_certificates_is_a_problem(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a certificate")

    with pytest.raises(DeliveryConfigError) as caught:
        build(smtp_settings(ca_file=str(ca_file)))

    [problem] = caught.value.problems
    assert problem.startswith(f"providers.email: `ca_file` {str(ca_file)!r} cannot be used: ")


def webhook_settings(**settings: Any) -> dict[str, Any]:
    """FULL with the sms webhook's settings changed."""
    document = copy.deepcopy(FULL)
    document["providers"]["sms"].update(settings)
    return document


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "No such file or directory"),
        ("not a certificate", "no certificate or crl found"),
    ],
)
def test_a_webhook_ca_file_missing_or_without_certificates_is_a_problem(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)

    with pytest.raises(DeliveryConfigError) as caught:
        build(webhook_settings(ca_file=str(ca_file)))

    [said] = caught.value.problems
    assert said.startswith(f"providers.sms: `ca_file` {str(ca_file)!r} cannot be used: ")
    assert problem in said


def test_a_webhook_ca_file_without_https_is_a_problem(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not read")

    with pytest.raises(DeliveryConfigError) as caught:
        build(webhook_settings(url="http://sms.example.com/send", ca_file=str(ca_file)))

    assert caught.value.problems == ["providers.sms: `ca_file` is for TLS: use an https:// `url`"]


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
    served = runner.invoke(app, ["serve", "--rules", str(rules), "--database", database], env=wide)
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


PLAINTEXT_AUTH = (
    "providers.email: `username_env`/`password_env` without TLS would send the password in "
    "clear text: set `tls: starttls` or `tls: implicit`, or `plaintext_auth: true` for a "
    "relay on a network you trust (a loopback host needs neither)"
)


@pytest.mark.parametrize(
    "settings",
    [
        {"starttls": None},
        {"starttls": None, "tls": "none"},
        {"starttls": None, "password_env": None},
        {"starttls": None, "username_env": None},
        {"starttls": None, "host": "127.0.0.1.example.com"},
    ],
)
def test_logging_in_without_tls_is_a_problem(settings: dict[str, Any]) -> None:
    with pytest.raises(DeliveryConfigError) as caught:
        build(smtp_settings(**settings))

    assert PLAINTEXT_AUTH in caught.value.problems


@pytest.mark.parametrize("left_out", ["username_env", "password_env"])
def test_a_login_needs_both_a_name_and_a_password(left_out: str) -> None:
    # A name alone logged in with an empty password, a password alone did not log in:
    # the server refused every email, each a dead letter.
    with pytest.raises(DeliveryConfigError) as caught:
        build(smtp_settings(**{left_out: None}))

    assert caught.value.problems == [
        "providers.email: `username_env` and `password_env` go together: logging in takes both"
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {"starttls": None, "plaintext_auth": True},
        {"starttls": None, "host": "127.0.0.1"},
        {"starttls": None, "host": "127.8.9.10"},
        {"starttls": None, "host": "::1"},
        {"starttls": None, "host": "localhost"},
        {"starttls": None, "tls": "implicit"},
        {"starttls": None, "username_env": None, "password_env": None},
    ],
)
def test_logging_in_without_tls_is_allowed_on_loopback_or_when_asked_for(
    settings: dict[str, Any],
) -> None:
    assert isinstance(build(smtp_settings(**settings)).providers["email"], SmtpProvider)


def test_plaintext_auth_must_be_true_or_false() -> None:
    with pytest.raises(DeliveryConfigError) as caught:
        build(smtp_settings(starttls=None, plaintext_auth="yes"))

    assert caught.value.problems == [
        "providers.email: `plaintext_auth` must be true or false, got 'yes'"
    ]


def places(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if isinstance(node, dict):
        for key, child in node.items():
            found.append((*prefix, key))
            found += places(child, (*prefix, key))
    return found


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["stub", "log", "smtp", "webhook", "http://x", "25:00", "SMTP_USER"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(path=st.sampled_from(places(FULL)), value=values)
@settings(max_examples=300, deadline=None)
def test_any_one_setting_changed_builds_or_fails_with_a_config_error(
    path: tuple[str, ...], value: Any
) -> None:
    try:
        build(changed(path, value))
    except DeliveryConfigError as exc:
        # The operator is told where: the provider or delivery setting that was changed.
        named = path[1] if len(path) > 1 else path[0]
        assert exc.problems and any(named in p for p in exc.problems), (path, exc.problems)


def test_rules_check_and_serve_refuse_logging_in_to_smtp_without_tls(tmp_path: Path) -> None:
    email = (
        "{type: smtp, host: smtp.example.com, sender: hello@example.com, "
        "username_env: SMTP_USER, password_env: SMTP_PASSWORD}"
    )

    checked, served = check_and_serve(tmp_path, f"providers: {{email: {email}}}", env=ENV)

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert PLAINTEXT_AUTH in result.output


def test_rules_check_and_serve_refuse_a_broken_delivery_section(tmp_path: Path) -> None:
    checked, served = check_and_serve(tmp_path, "delivery: {max_attempts: many}")

    for result in (checked, served):
        assert result.exit_code == 1, result.output
        assert "delivery.max_attempts: 'many' is not a number" in result.output


@pytest.mark.parametrize(("given", "hour"), [("8:00", 8), ("08:00", 8), ("7:30:00", 7)])
def test_quiet_hours_take_an_hour_written_with_one_digit(given: str, hour: int) -> None:
    plan = build(changed(("delivery", "quiet_hours", "sms", "end"), given))

    assert plan.quiet_hours["sms"].end.hour == hour


def test_the_plan_says_where_each_channel_sends_and_never_a_secret() -> None:
    document = {
        **FULL,
        "providers": {
            **FULL["providers"],
            "sms": {"type": "webhook", "url": "https://user:pw@sms.example.com:8443/send?t=tok"},
        },
    }

    described = build(document).channels_described()

    assert described == [
        "email: smtp, smtp.example.com:587 (starttls)",
        "sms: webhook, https://sms.example.com:8443",
        "internal: log+webhook, WARNING lines in the log and https://chat.example.com",
    ]


def test_the_plan_names_the_provider_an_alert_s_webhook_is_added_to() -> None:
    # It said "internal: log+webhook, outbox.jsonl and ..." of alerts the stub recorded.
    internal = {"type": "stub", "webhook": {"url": "https://chat.example.com/hooks/risk"}}

    plan = build({"providers": {"internal": internal}})

    assert plan.channels_described()[2] == (
        "internal: stub+webhook, outbox.jsonl and https://chat.example.com"
    )


def test_the_plan_says_its_retries_rate_limits_and_quiet_hours() -> None:
    assert build(FULL).policy_described() == [
        "retries: 5 attempts at most, the second after 2 s, each wait x2, at most 600 s; "
        "then a dead letter",
        "rate limits: sms 10/s, per delivering process",
        "quiet hours: sms 21:00-08:00, in each user's timezone (else UTC)",
    ]
    assert build({}).channels_described() == [
        "email: stub, outbox.jsonl",
        "sms: stub, outbox.jsonl",
        "internal: log, WARNING lines in the log",
    ]
    assert len(build({}).policy_described()) == 1  # no rate limit, no quiet hours


def test_the_plan_says_quiet_hours_whose_start_is_their_end_hold_nothing_back() -> None:
    # `herald rules check` listed "quiet hours: email 08:00-08:00", which reads as quiet all
    # day; a window whose start is its end is none at all (the README says so).
    window = {"start": "08:00", "end": "08:00"}
    document = {"delivery": {"quiet_hours": {"email": window}}}

    [_retries, quiet] = build(document).policy_described()

    assert quiet == (
        "quiet hours: email none (08:00-08:00: the start is the end), in each user's "
        "timezone (else UTC)"
    )


def test_a_plan_whose_first_wait_is_above_the_ceiling_says_the_wait_it_keeps() -> None:
    # It said "the second after 100 s, each wait x2, at most 10 s": every wait is 10 s.
    delivery = {"backoff_seconds": 100, "max_backoff_seconds": 10}

    [retries] = build({"delivery": delivery}).policy_described()

    assert retries == (
        "retries: 5 attempts at most, each 10 s after the one before (backoff_seconds 100 "
        "is above max_backoff_seconds 10); then a dead letter"
    )


def test_the_plan_shows_the_seconds_a_quiet_hours_bound_keeps() -> None:
    # "21:00:30" was listed as 21:00, while a message due at 21:00:10 is not held.
    window = {"start": "21:00:30", "end": "08:00"}

    [_retries, quiet] = build({"delivery": {"quiet_hours": {"sms": window}}}).policy_described()

    assert quiet == "quiet hours: sms 21:00:30-08:00, in each user's timezone (else UTC)"


def test_a_plan_with_one_attempt_says_it_retries_nothing() -> None:
    """It said "1 attempts at most, the second after 2 s", of a second that never comes."""
    described = build({"delivery": {"max_attempts": 1}}).policy_described()

    assert described == ["retries: none, one attempt; then a dead letter"]
