"""Logging in to an SMTP server: never in clear text unless on loopback or asked for, with
both a name and a password, each in ASCII."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.setup import DeliveryConfigError, build_delivery
from tests.support.delivery_config import ENV, PLAINTEXT_AUTH, build, smtp_settings


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


@pytest.mark.parametrize("variable", ["SMTP_USER", "SMTP_PASSWORD"])
def test_credentials_beyond_ascii_are_a_problem_that_does_not_quote_them(variable: str) -> None:
    # The login cannot send them: every email was retried with a traceback quoting the
    # password's first such character, then dead-lettered.
    env = {**ENV, variable: "pässwort"}

    with pytest.raises(DeliveryConfigError) as caught:
        build_delivery(smtp_settings(), outbox=Path("outbox.jsonl"), env=env)

    key = "username" if variable == "SMTP_USER" else "password"
    assert caught.value.problems == [
        f"providers.email: environment variable {variable} (for {key}) has characters "
        "beyond ASCII, which an SMTP login cannot send"
    ]
    assert "ä" not in str(caught.value)
