"""The webhook provider's settings in the rule file: the URL it posts to, the signing
secret (named by an environment variable), a private CA to trust, and its timeout."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from herald.delivery import readers

if TYPE_CHECKING:
    from herald.delivery.providers.webhook import WebhookProvider

WEBHOOK_KEYS = {"type", "url", "secret_env", "ca_file", "timeout"}


def webhook_provider(
    channel: str,
    spec: Mapping[str, Any],
    env: Mapping[str, str],
    where: str,
    problems: list[str],
    *,
    folder: Path | None = None,
) -> WebhookProvider | None:
    """The provider ``spec`` (the settings at ``where``, e.g. ``providers.sms``) describes
    for ``channel``, its secret read from ``env``; or None, each problem appended to
    ``problems``. Nothing is connected to. ``folder``: where a relative ``ca_file`` is,
    the rule file's (else the current one)."""
    before = len(problems)
    url = readers.text(spec, "url", where, problems, required=True)
    if url is not None and not readers.is_http_url(url):
        # Not echoed: a webhook URL often carries its own token (chat hooks do).
        problems.append(
            f"{where}: `url` must be an http:// or https:// URL with a host, a numeric port "
            "if any, and no whitespace"
        )
    elif url is not None and (problem := _host_problem(url)) is not None:
        problems.append(f"{where}: `url` has a host that cannot be a DNS name: {problem}")
    secret = readers.secret(spec, "secret", env, where, problems)
    tls_context = _tls_context(spec, url, where, problems, folder)
    timeout = readers.send_timeout(spec, where, problems)
    if len(problems) > before:
        return None
    assert url is not None and timeout is not None
    # Imported here: its HTTP client takes longer to import than the rest of the rule
    # file's reading, which every command does and few with a webhook.
    from herald.delivery.providers.webhook import WebhookProvider

    return WebhookProvider(
        name=f"{channel}:webhook",
        url=url,
        secret=secret.encode() if secret else None,
        timeout=timeout,
        tls_context=tls_context,
    )


def _host_problem(url: str) -> str | None:
    """Why the host of ``url``, an http(s) URL, is no name DNS can look up, or None: the
    HTTP client accepts it, and every send failed at connect time. The host alone is
    checked, never echoed with the rest: a webhook URL often carries its own token."""
    host = urlsplit(url).hostname
    return readers.dns_name_problem(host) if host else None


def _tls_context(
    spec: Mapping[str, Any], url: str | None, where: str, problems: list[str], folder: Path | None
) -> ssl.SSLContext | None:
    """A context trusting the certificates of ``ca_file`` (see ``readers.trusting``), for a
    receiver behind a private CA; None for the system's trust store."""
    ca_file = readers.text(spec, "ca_file", where, problems)
    if ca_file is None:
        return None
    if url is not None and not url.lower().startswith("https://"):
        problems.append(f"{where}: `ca_file` is for TLS: use an https:// `url`")
        return None
    return readers.trusting(ca_file, where, problems, folder)
