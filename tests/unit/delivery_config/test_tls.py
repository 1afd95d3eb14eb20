"""How an SMTP provider and a webhook protect their connection: the `tls` an SMTP
provider uses and its port, and a `ca_file` that needs TLS and holds certificates."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.setup import DeliveryConfigError
from tests.support.delivery_config import FULL, build, smtp_settings


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


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        # What YAML makes of `tls: off` and `tls: on`: the problem said `got False`, a
        # value the file does not hold.
        (
            False,
            "got false (YAML reads an unquoted off, no or false so): for no TLS write `tls: none`",
        ),
        (
            True,
            "got true (YAML reads an unquoted on, yes or true so): write `tls: starttls` "
            "or `tls: implicit`",
        ),
        ("STARTTLS", "got 'STARTTLS': did you mean `starttls`?"),
        ("implict", "got 'implict': did you mean `implicit`?"),
        ("ssl", "got 'ssl'"),
    ],
)
def test_a_tls_mode_the_file_does_not_know_is_named_as_written(tls: Any, problem: str) -> None:
    with pytest.raises(DeliveryConfigError) as caught:
        build(smtp_settings(starttls=None, tls=tls))

    assert caught.value.problems == [
        f"providers.email: `tls` must be one of none, starttls, implicit, {problem}"
    ]


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
