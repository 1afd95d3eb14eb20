"""The webhook channel: POST each message as JSON to a configured URL.

What the receiver gets, per request:

- body: ``SendRequest.as_json()`` as UTF-8 JSON;
- ``Content-Type: application/json``;
- ``Idempotency-Key: <message_id>``, the same on every retry of a message,
  because delivery is at-least-once and the receiver must de-duplicate;
- ``Herald-Signature: t=<unix seconds>,v1=<hex>`` when a secret is set
  (see ``herald.delivery.providers.signing`` for how to verify it);
- ``User-Agent: herald/<version>``;
- ``Accept-Encoding: identity``: the answer is read raw, never inflated.

How the answer is read: its status decides (of its body, only the first 64 KiB
are read, for the receiver's reference or the detail); 2xx is sent; 408, 429,
5xx, connection errors and timeouts are worth retrying (not before the answer's
``Retry-After``, in seconds or as a date, when it has one); anything else (other
4xx, an unfollowed 3xx) is a permanent failure that retrying would only repeat.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp

from herald import __version__
from herald.delivery.provider import DeliveryResult, SendRequest
from herald.delivery.providers.signing import SIGNATURE_HEADER, signature_header

_RETRYABLE_STATUSES = frozenset({408, 429})
_DETAIL_BODY_CHARS = 200
# Of an answer's body, no more is read than this: enough for a JSON answer's ``id``.
_BODY_BYTES_READ = 64 * 1024


class WebhookProvider:
    """Delivers messages by HTTP POST to ``url``; implements ``Provider``.

    Args:
        name: the provider's name in configuration and the audit.
        url: the endpoint; redirects are not followed (a moved endpoint is a
            configuration change, not something to chase silently).
        secret: HMAC key for ``Herald-Signature``; None sends no signature.
        timeout: seconds allowed for the connection (a free one from the pool or
            a new one) and for each read of the answer; going over is a ``retry``.
        headers: extra headers sent on every request. The headers listed in
            the module docstring are Herald's and win over these.
        clock: Unix time in seconds, used for the signature timestamp.
        session: an ``aiohttp.ClientSession`` to share; the caller keeps ownership
            and closes it. When None the provider makes its own on first use
            and closes it in ``aclose``.
        tls_context: what the provider trusts (the rule file's ``ca_file``, for a
            receiver behind a private CA); None for the system's trust store.
    """

    def __init__(
        self,
        name: str,
        url: str,
        secret: bytes | None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.local = False
        self.url = url
        self.timeout = timeout
        self._secret = secret
        self._extra_headers = dict(headers or {})
        self._clock = clock
        self._session = session
        self._owns_session = session is None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._proxy = _proxy_for(url)
        # aiohttp takes True for the system's trust store.
        self._tls: ssl.SSLContext | bool = tls_context or True
        self._timeouts = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )

    @property
    def target(self) -> str:
        # The origin alone: a hook's path and query often hold its token, as a user part
        # holds a password.
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    async def send(self, request: SendRequest) -> DeliveryResult:
        """POST ``request`` once and classify the outcome. Never raises for delivery failures."""
        # Serialise once: the signature covers these exact bytes.
        body = json.dumps(request.as_json(), ensure_ascii=False, separators=(",", ":")).encode()
        try:
            for _ in range(_KEPT_CONNECTIONS_TRIED):
                kept = _KeptConnection()
                try:
                    return await self._post(request, body, kept)
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    # A kept connection the receiver closed while idle (as it ends those
                    # idle for longer than it keeps them) just as it was taken: nothing was
                    # answered on it, so the message goes on another, as an email does.
                    if not kept.reused:
                        raise
            return await self._post(request, body, _KeptConnection())
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return DeliveryResult.retry(f"timeout after {self.timeout:g} s ({type(exc).__name__})")
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            # The URL is not repeated: it often carries a token (chat hooks do), and this
            # detail is logged and shown by the audit.
            return DeliveryResult.failed(f"the webhook URL is not usable: {type(exc).__name__}")
        except aiohttp.ClientConnectorError as exc:
            return DeliveryResult.retry(f"connection failed: {self._connect_failure(exc)}")
        except aiohttp.ClientError as exc:
            # The connection broke mid-exchange: the receiver may or may not
            # have the message, and the idempotency key covers the retry.
            return DeliveryResult.retry(f"connection error: {self._describe(exc)}")

    async def _post(
        self, request: SendRequest, body: bytes, kept: _KeptConnection
    ) -> DeliveryResult:
        """POST ``body`` once and classify the answer; a connection error raises, and
        ``kept`` says whether the post went on a kept connection."""
        async with self._get_session().post(
            self.url,
            data=body,
            headers=self._headers_for(request, body),
            timeout=self._timeouts,
            ssl=self._tls,
            proxy=self._proxy,
            allow_redirects=False,
            trace_request_ctx=kept,
        ) as response:
            content = await _head_of(response)
            result = _classify(response, content, now=self._clock())
            location = response.headers.get("Location", "").strip()
            if 300 <= response.status < 400 and location:
                return DeliveryResult.failed(f"{result.detail} ({self._redirect(location)})")
            return result

    async def aclose(self) -> None:
        """Close the HTTP session if this provider created it; idempotent. A session made
        on another event loop, since finished, is let go: its connections went with it."""
        if not self._owns_session or self._session is None:
            return
        session, self._session = self._session, None
        loop, self._session_loop = self._session_loop, None
        if loop is asyncio.get_running_loop():
            await session.close()
        else:
            session.detach()

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily: a session belongs to the event loop it was made on, so it is
        # made on the loop that sends, not on whatever loop was running when the rule
        # file loaded. A provider sending from another loop than before (each
        # `asyncio.run` makes a new one) starts another session there; the old one is
        # let go, as its connections went with its loop.
        loop = asyncio.get_running_loop()
        if self._owns_session and self._session_loop is not loop:
            if self._session is not None:
                self._session.detach()
            self._session = aiohttp.ClientSession(trace_configs=[_kept_connections_noted()])
            self._session_loop = loop
        assert self._session is not None
        return self._session

    def _redirect(self, location: str) -> str:
        """Where an unfollowed redirect points, by its origin alone (a hook's path often
        holds its token, as ``target`` leaves out): "HTTP 301" alone left the operator to
        find out where the receiver had moved."""
        fix = "not followed: point the rule file's url at the receiver's new address"
        try:
            parts = urlsplit(urljoin(self.url, location))
            origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        except ValueError:  # a Location no URL parser reads
            return f"redirects to a Location that is not a URL, {fix}"
        if origin == self.target:
            return f"redirects to another path of {origin}, {fix}"
        return f"redirects to {origin}/..., {fix}"

    def _describe(self, exc: Exception) -> str:
        # Client errors often carry an empty message; the class name still says what
        # happened. One quoting the URL shows its origin alone, as `target` does.
        return _origins_only(str(exc) or type(exc).__name__)

    def _connect_failure(self, exc: aiohttp.ClientConnectorError) -> str:
        """Why no connection was made, in the system's words: aiohttp's own, `Cannot
        connect to host 127.0.0.1:9 ssl:default [Connect call failed ...]`, name TLS
        settings even for an http:// URL, and never say the connection was refused."""
        os_error = getattr(exc, "os_error", None)
        if isinstance(exc, aiohttp.ClientSSLError) or not isinstance(os_error, OSError):
            return self._describe(exc)  # a TLS failure says what TLS found wrong
        if isinstance(os_error, socket.gaierror):
            reason = f"cannot resolve the host name ({os_error.strerror})"
        elif os_error.errno is not None and os_error.errno > 0:
            reason = os.strerror(os_error.errno)  # "Connection refused"
        else:
            reason = str(os_error) or type(os_error).__name__
        host = f"[{exc.host}]" if ":" in exc.host else exc.host
        return f"cannot connect to {host}:{exc.port}: {reason}"

    def _headers_for(self, request: SendRequest, body: bytes) -> dict[str, str]:
        headers = dict(self._extra_headers)
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = request.message_id
        headers["User-Agent"] = f"herald/{__version__}"
        headers["Accept-Encoding"] = "identity"
        if self._secret is not None:
            timestamp = int(self._clock())
            headers[SIGNATURE_HEADER] = signature_header(self._secret, timestamp, body)
        return headers


# Posts of one send on kept connections found closed, before one on a new connection.
_KEPT_CONNECTIONS_TRIED = 2


class _KeptConnection:
    """Whether a post went on a connection kept from an earlier one (the client's tracing
    says so), rather than on one opened for it."""

    def __init__(self) -> None:
        self.reused = False


def _kept_connections_noted() -> aiohttp.TraceConfig:
    """Tracing that marks a post's ``_KeptConnection`` when it takes a kept connection."""

    async def noted(_session: Any, context: Any, _params: Any) -> None:
        if isinstance(context.trace_request_ctx, _KeptConnection):
            context.trace_request_ctx.reused = True

    tracing = aiohttp.TraceConfig()
    tracing.on_connection_reuseconn.append(noted)
    return tracing


# A URL in an HTTP client error's words, up to the quote or space that ends it.
_URL_IN_WORDS = re.compile(r"(https?://)([^\s'\"/?#]*)[^\s'\"]*", re.IGNORECASE)


def _origins_only(words: str) -> str:
    """``words`` with each URL in them cut to its origin, without a user part: a hook's
    path and query often hold its token. The client quotes the URL as it rewrote it (an
    escape's hex in capitals, a default port left out), not as the rule file has it, so
    the URL as written is not what to look for."""
    return _URL_IN_WORDS.sub(lambda url: url[1] + url[2].rpartition("@")[2], words)


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), as
    most HTTP clients read them. Read once: aiohttp's own reading of the environment
    (``trust_env``) also looks for a .netrc file on a thread for every request, which
    cost more than half of the sends' speed."""
    parts = urlsplit(url)
    if parts.hostname and proxy_bypass(parts.hostname):
        return None
    return getproxies().get(parts.scheme)


async def _head_of(response: aiohttp.ClientResponse) -> bytes:
    """The start of the answer's body, at most ``_BODY_BYTES_READ``: the status decides, and
    the body only lends a reference or a detail, so one that is huge, or stalls, must not
    hold the send up (nor turn a receiver's 2xx into a retry that would duplicate)."""
    head = bytearray()
    try:
        while len(head) < _BODY_BYTES_READ:
            chunk = await response.content.read(_BODY_BYTES_READ - len(head))
            if not chunk:
                break
            head += chunk
    except (
        TimeoutError,
        aiohttp.ClientError,
    ):  # a body that stalls past the timeout, or breaks off
        pass
    return bytes(head)


def _classify(response: aiohttp.ClientResponse, content: bytes, *, now: float) -> DeliveryResult:
    status = response.status
    if 200 <= status < 300:
        return DeliveryResult.sent(f"HTTP {status}", reference=_reference_from(content))
    snippet = _snippet(content)
    detail = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        detail += f" (Retry-After: {retry_after[:40]})"
    if status in _RETRYABLE_STATUSES or status >= 500:
        return DeliveryResult.retry(detail, after=_seconds_to_wait(retry_after, now))
    return DeliveryResult.failed(detail)


def _seconds_to_wait(retry_after: str | None, now: float) -> float | None:
    """``Retry-After`` (RFC 9110 10.2.3) in seconds from ``now``: delay-seconds or an HTTP
    date. None when absent or unreadable."""
    if not retry_after:
        return None
    value = retry_after.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _reference_from(content: bytes) -> str | None:
    """The receiver's own id for the message: a top-level ``id`` in a JSON object body."""
    try:
        payload: Any = json.loads(content)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past reason
        return None
    if isinstance(payload, dict) and payload.get("id") is not None:
        return str(payload["id"])
    return None


def _snippet(content: bytes) -> str:
    text = content.decode("utf-8", errors="replace")
    return " ".join(text.split())[:_DETAIL_BODY_CHARS]
