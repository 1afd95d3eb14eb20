"""The `providers` and `delivery` sections of a rule file: the documented settings build
every provider, and a wrong or missing setting is one error naming every problem, never
a traceback at start-up."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.setup import DeliveryConfigError, build_delivery
from tests.support.delivery_config import ENV, FULL, build, changed


def test_the_documented_configuration_builds_every_provider() -> None:
    plan = build(FULL)

    assert {name: p.name for name, p in plan.providers.items()} == {
        "email": "email:smtp",
        "sms": "sms:webhook",
        "internal": "internal:log+webhook",
    }
    assert plan.retry.max_attempts == 5 and plan.rates == {"sms": (10.0, 10)}


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
        # A quoted number: the hint about exponents did not fit it.
        (
            ("providers", "email", "port"),
            "587",
            "providers.email.port: '587' is not a number (it is in quotes, which make it "
            "text: write it without them)",
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
        # Names no socket can look up: each send raised UnicodeError, and was retried.
        (
            ("providers", "email", "host"),
            "smtp." + "a" * 64 + ".example",
            "providers.email: `host` cannot be a DNS name: a label is over 63 characters, "
            f"got 'smtp.{'a' * 64}.example'",
        ),
        (
            ("providers", "email", "host"),
            "ü" * 60 + ".example",
            "`host` cannot be a DNS name: a label is over 63 characters (in its ASCII form, "
            "xn--...)",
        ),
        (
            ("providers", "email", "host"),
            "mailא.example",
            "`host` cannot be a DNS name: the label 'mailא' has no ASCII form (IDNA)",
        ),
        # Over DNS's 253 characters, in labels of 63: every send failed at connect time.
        (
            ("providers", "email", "host"),
            ".".join(["a" * 63] * 4),
            "providers.email: `host` cannot be a DNS name: the name is over 253 characters, "
            f"got {'.'.join(['a' * 63] * 4)!r}",
        ),
        (
            ("providers", "email", "host"),
            ".".join(["ü" * 45] * 5),
            "`host` cannot be a DNS name: the name is over 253 characters (in its ASCII form, "
            "xn--...)",
        ),
        # A webhook's host is looked up as an SMTP host is: the check let these through.
        (
            ("providers", "sms", "url"),
            f"https://{'a' * 64}.example/t0k",
            "providers.sms: `url` has a host that cannot be a DNS name: a label is over 63 "
            "characters",
        ),
        (
            ("providers", "sms", "url"),
            f"https://{'.'.join(['a' * 63] * 4)}/t0k",
            "providers.sms: `url` has a host that cannot be a DNS name: the name is over 253 "
            "characters",
        ),
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
            "sms.start: 1260 is a number: YAML reads 21:00 unquoted as the number 1260 (base 60):"
            ' quote it, "21:00"',
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


@pytest.mark.parametrize(
    "host",
    [
        "smtp.example.com",
        "mail_relay",
        "2001:db8::25",
        "10.0.0.25",
        "a" * 63 + ".example.",  # as long as a label can be
        ".".join(["a" * 63] * 3 + ["a" * 61]) + ".",  # as long as a name can be, 253
        "bücher.example",
    ],
)
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


@pytest.mark.parametrize(("given", "hour"), [("8:00", 8), ("08:00", 8), ("7:30:00", 7)])
def test_quiet_hours_take_an_hour_written_with_one_digit(given: str, hour: int) -> None:
    plan = build(changed(("delivery", "quiet_hours", "sms", "end"), given))

    assert plan.quiet_hours["sms"].end.hour == hour


@pytest.mark.parametrize(
    "url",
    [
        f"https://{'a' * 63}.example/t0k",
        f"https://{'.'.join(['a' * 63] * 3 + ['a' * 61])}/t0k",
        "https://bücher.example/t0k",
        "https://[2001:db8::25]:8443/t0k",
    ],
)
def test_a_webhook_host_may_be_any_name_dns_can_look_up(url: str) -> None:
    sms = build(changed(("providers", "sms", "url"), url)).providers["sms"]

    assert isinstance(sms, WebhookProvider) and sms.url == url
