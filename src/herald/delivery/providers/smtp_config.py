"""The SMTP provider's settings in the rule file: where the server is, how the connection
is protected, and the credentials (named by environment variables)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herald.config import is_loopback_host
from herald.delivery import readers
from herald.delivery.providers.smtp import SmtpProvider, TlsMode
from herald.rules.rule_file.keys import did_you_mean

SMTP_KEYS = {
    "type",
    "host",
    "port",
    "sender",
    "reply_to",
    "username_env",
    "password_env",
    "starttls",
    "tls",
    "ca_file",
    "plaintext_auth",
    "timeout",
}
_TLS_MODES: tuple[TlsMode, ...] = ("none", "starttls", "implicit")


def smtp_provider(
    channel: str,
    spec: Mapping[str, Any],
    env: Mapping[str, str],
    where: str,
    problems: list[str],
    *,
    folder: Path | None = None,
) -> SmtpProvider | None:
    """The provider ``spec`` (the settings at ``where``, e.g. ``providers.email``)
    describes for ``channel``, its credentials read from ``env``; or None, each problem
    appended to ``problems``. Nothing is connected to. ``folder``: where a relative
    ``ca_file`` is, the rule file's (else the current one)."""
    before = len(problems)
    host = readers.text(spec, "host", where, problems, required=True)
    if host is not None and not readers.is_host(host):
        problems.append(
            f"{where}: `host` must be a host name or an IP address alone (no scheme, port, "
            f"brackets or spaces; the port goes in `port`), got {host!r}"
        )
    elif host is not None and (problem := readers.dns_name_problem(host)) is not None:
        problems.append(f"{where}: `host` cannot be a DNS name: {problem}, got {host!r}")
    tls = _smtp_tls(spec, where, problems)
    tls_context = _tls_context(spec, tls, where, problems, folder)
    # SMTPS listens on 465, plain SMTP (and STARTTLS to a relay) on 25.
    port = readers.number(
        spec.get("port", 465 if tls == "implicit" else 25),
        f"{where}.port",
        problems,
        minimum=1,
        maximum=65535,
        whole=True,
    )
    sender = readers.address(spec, "sender", where, problems, required=True)
    reply_to = readers.address(spec, "reply_to", where, problems)
    username = readers.secret(spec, "username", env, where, problems)
    password = readers.secret(spec, "password", env, where, problems)
    timeout = readers.send_timeout(spec, where, problems)
    _check_credentials_pair(spec, where, problems)
    _check_ascii_credentials(spec, {"username": username, "password": password}, where, problems)
    _check_plaintext_auth(spec, host, tls, where, problems)
    if len(problems) > before:
        return None
    assert host is not None and port is not None and sender is not None and timeout is not None
    assert tls is not None
    return SmtpProvider(
        name=f"{channel}:smtp",
        host=host,
        port=int(port),
        sender=sender,
        reply_to=reply_to,
        username=username,
        password=password,
        tls=tls,
        tls_context=tls_context,
        timeout=timeout,
        credential_names=_credential_names(spec),
    )


def _credential_names(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """The variables the login is read from, for a refused login to name."""
    if "username_env" not in spec:
        return None
    return str(spec["username_env"]), str(spec["password_env"])


def _smtp_tls(spec: Mapping[str, Any], where: str, problems: list[str]) -> TlsMode | None:
    """``tls``, or ``starttls: true``, its older spelling."""
    starttls = readers.flag(spec, "starttls", where, problems)
    tls = spec.get("tls")
    if tls is None:
        return "starttls" if starttls else "none"
    mode = next((known for known in _TLS_MODES if known == tls), None)
    if mode is None:
        problems.append(
            f"{where}: `tls` must be one of {', '.join(_TLS_MODES)}, got {_tls_as_written(tls)}"
        )
        return None
    if starttls and mode != "starttls":
        problems.append(f"{where}: `starttls: true` contradicts `tls: {mode}`; keep `tls` alone")
        return None
    return mode


def _tls_as_written(tls: Any) -> str:
    """An unknown ``tls`` as the file has it: YAML reads an unquoted ``off`` or ``on`` as
    false or true, which a problem quoting ``False`` did not show; a near miss, with the
    mode it looks mistyped from."""
    if tls is False:
        return "false (YAML reads an unquoted off, no or false so): for no TLS write `tls: none`"
    if tls is True:
        return (
            "true (YAML reads an unquoted on, yes or true so): write `tls: starttls` or "
            "`tls: implicit`"
        )
    return f"{tls!r}{did_you_mean(tls, _TLS_MODES)}"


def _tls_context(
    spec: Mapping[str, Any],
    tls: TlsMode | None,
    where: str,
    problems: list[str],
    folder: Path | None,
) -> ssl.SSLContext | None:
    """A context trusting the certificates of ``ca_file`` (see ``readers.trusting``); None
    for the system's trust store."""
    ca_file = readers.text(spec, "ca_file", where, problems)
    if ca_file is None:
        return None
    if tls == "none":
        problems.append(f"{where}: `ca_file` is for TLS: set `tls: starttls` or `tls: implicit`")
        return None
    return readers.trusting(ca_file, where, problems, folder)


def _check_credentials_pair(spec: Mapping[str, Any], where: str, problems: list[str]) -> None:
    """A login takes a name and a password: with a password alone none was made (and the
    server refused the mail), with a name alone it was made with an empty password (and
    refused); either way every email became a dead letter."""
    if ("username_env" in spec) != ("password_env" in spec):
        problems.append(
            f"{where}: `username_env` and `password_env` go together: logging in takes both"
        )


def _check_ascii_credentials(
    spec: Mapping[str, Any], credentials: Mapping[str, str | None], where: str, problems: list[str]
) -> None:
    """The SMTP login (``smtplib``'s) sends the name and password in ASCII alone: one
    beyond it raised at every send, an attempt retried with its first such character in
    the audit, until the email was a dead letter. Said without quoting the secret."""
    for key, value in credentials.items():
        if value is not None and not value.isascii():
            problems.append(
                f"{where}: environment variable {spec[f'{key}_env']} (for {key}) has "
                "characters beyond ASCII, which an SMTP login cannot send"
            )


def _check_plaintext_auth(
    spec: Mapping[str, Any], host: str | None, tls: TlsMode | None, where: str, problems: list[str]
) -> None:
    """Logging in without TLS sends the password as it is (AUTH PLAIN and LOGIN are only
    base64): refused unless the server is on this machine or ``plaintext_auth: true``
    says the network in between is trusted."""
    before = len(problems)
    asked_for = readers.flag(spec, "plaintext_auth", where, problems)
    if len(problems) > before:  # not true or false: that is the problem to fix first
        return
    logs_in = "username_env" in spec or "password_env" in spec
    if not logs_in or tls != "none" or asked_for or host is None or is_loopback_host(host):
        return
    problems.append(
        f"{where}: `username_env`/`password_env` without TLS would send the password in "
        "clear text: set `tls: starttls` or `tls: implicit`, or `plaintext_auth: true` for a "
        "relay on a network you trust (a loopback host needs neither)"
    )
