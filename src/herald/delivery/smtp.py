"""The email channel: hand each message to an SMTP server (a relay or a sink).

The standard library's ``smtplib`` is blocking, so each send runs in a thread of the
provider's own (``SEND_THREADS`` of them) and the dispatcher's event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Literal

from herald.delivery.email_message import ascii_domain, build_message
from herald.delivery.provider import DeliveryResult, SendRequest

log = logging.getLogger(__name__)

# How a connection is protected: not at all, upgraded with STARTTLS after the greeting
# (port 587), or TLS from the first byte (SMTPS, port 465).
TlsMode = Literal["none", "starttls", "implicit"]

# As many sends at once as the dispatcher makes (its ``concurrency``), each on a thread of
# its own: on the event loop's shared pool (six threads on two cores) the others waited
# for one, and a send cut off by its claim's end while waiting lost an attempt untried.
SEND_THREADS = 16


class SmtpProvider:
    """Delivers messages through an SMTP server; implements ``Provider``.

    Each send opens its own connection (TLS from the start with implicit TLS),
    says EHLO, optionally upgrades with STARTTLS and logs in, sends one message
    and quits. A shared connection
    would save a handshake per message, but ``smtplib.SMTP`` is not safe to
    use from several worker threads at once, and relays drop idle
    connections, so reuse would need a pool with reconnects; at Herald's
    volumes the handshake is cheap by comparison.

    Args:
        name: the provider's name in configuration and the audit.
        host, port: the SMTP server.
        sender: the ``From`` header, e.g. ``"Herald <noreply@example.com>"``;
            the envelope sender is its address part.
        reply_to: the ``Reply-To`` header, if any.
        username, password: log in with these (inside TLS when there is TLS).
        tls: ``"starttls"`` upgrades the connection after the greeting,
            ``"implicit"`` speaks TLS from the first byte (``smtplib.SMTP_SSL``),
            ``"none"`` sends in clear text.
        tls_context: verifies the server's certificate and name; by default
            ``ssl.create_default_context()``, the system's trust store.
        timeout: seconds allowed for connecting and for each read or write on
            the socket (not for the whole exchange: the caller bounds that by
            cancelling ``send``, which ends the connection at once).
        clock: Unix time in seconds, used for the ``Date`` header.

    Outcomes: accepted is ``sent`` (reference: the ``Message-ID``); an SMTP 4xx
    reply, a refused or dropped connection or a timeout is ``retry``; an SMTP
    5xx reply (bad recipient, rejected content, wrong credentials) or a server
    that lacks a required extension is ``failed``.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        reply_to: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: TlsMode = "none",
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.local = False
        self.host = host
        self.port = port
        self.sender = sender
        self.reply_to = reply_to
        self.username = username
        self._password = password
        self.tls = tls
        self._tls_context = tls_context
        self.timeout = timeout
        self._clock = clock
        self._threads: ThreadPoolExecutor | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}" + ("" if self.tls == "none" else f" ({self.tls})")

    async def send(self, request: SendRequest) -> DeliveryResult:
        """Send ``request`` once and classify the outcome. Never raises for delivery failures."""
        try:
            message = build_message(
                request,
                sender=self.sender,
                reply_to=self.reply_to,
                date=datetime.fromtimestamp(self._clock(), UTC),
            )
        except (ValueError, TypeError) as exc:
            # A header the email package refuses (e.g. a malformed address) will
            # be refused again on every retry.
            return DeliveryResult.failed(f"cannot build email: {exc}")
        context = None
        if self.tls != "none":
            context = self._tls_context or ssl.create_default_context()
        smtp = _AbortableSMTP(
            timeout=self.timeout, implicit_tls=context if self.tls == "implicit" else None
        )
        if self._threads is None:
            self._threads = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="herald-smtp")
        send = functools.partial(
            self._send_blocking, smtp, message, ascii_domain(request.recipient), context
        )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, send)
        except asyncio.CancelledError:
            # Cut off (the claim's deadline): the thread cannot be cancelled, so end its
            # connection, or it would go on and send the message after the dispatcher
            # recorded the attempt as unanswered, and the retry would send it again.
            smtp.abort()
            if smtp.accepted is not None:
                # The relay had taken the message, only the goodbye was left: it is sent,
                # and recorded as unanswered it would be sent again.
                return smtp.accepted
            raise

    async def aclose(self) -> None:
        """Let the send threads end (connections do not outlive a send); idempotent."""
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False)

    def _send_blocking(
        self,
        smtp: _AbortableSMTP,
        message: EmailMessage,
        recipient: str,
        context: ssl.SSLContext | None,
    ) -> DeliveryResult:
        where = f"{self.host}:{self.port}"
        try:
            code, greeting = smtp.connect(self.host, self.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            if self.tls == "starttls":
                smtp.starttls(context=context)
            if self.username is not None:
                smtp.login(self.username, self._password or "")
            refused = smtp.send_message(message, to_addrs=[recipient])
            if not refused:
                smtp.accepted = DeliveryResult.sent(
                    f"accepted by {where}", reference=message["Message-ID"]
                )
            _say_goodbye(smtp)
        except smtplib.SMTPRecipientsRefused as exc:
            return _classify_refused(exc.recipients)
        except smtplib.SMTPResponseException as exc:
            return _classify_reply(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib reports a read timeout as a disconnect; say which it was.
            if isinstance(exc.__context__, TimeoutError):
                return DeliveryResult.retry(f"timeout after {self.timeout:g} s talking to {where}")
            return DeliveryResult.retry(f"SMTP server {where} disconnected: {exc}")
        except smtplib.SMTPException as exc:
            # What is left are capability mismatches (no STARTTLS, no usable AUTH
            # mechanism, no SMTPUTF8): configuration, not a passing problem.
            return DeliveryResult.failed(f"SMTP server {where}: {exc}")
        except TimeoutError:
            return DeliveryResult.retry(f"timeout after {self.timeout:g} s talking to {where}")
        except OSError as exc:
            # Refused connections, unreachable hosts, DNS and TLS trouble.
            return DeliveryResult.retry(f"cannot connect to {where}: {exc}")
        finally:
            smtp.close()
        if refused or smtp.accepted is None:  # only possible with several recipients
            return _classify_refused(refused)
        return smtp.accepted


class _AbortableSMTP(smtplib.SMTP):
    """An ``smtplib.SMTP`` whose exchange another thread can end at any point: ``abort``
    shuts its socket down, so a blocked read or write in the sending thread ends at once,
    and a connection still being opened is closed as soon as it is.

    With ``implicit_tls`` the connection is wrapped in TLS before the greeting, as
    ``smtplib.SMTP_SSL`` does (verifying the certificate for the host connected to), and
    a TLS handshake in progress can be ended too."""

    def __init__(self, *, timeout: float, implicit_tls: ssl.SSLContext | None = None) -> None:
        self._abort_lock = threading.Lock()
        self._aborted = False
        # Set once the relay accepted the message (250 after DATA): from then on it is sent,
        # whatever happens to the rest of the session.
        self.accepted: DeliveryResult | None = None
        self._socket: socket.socket | None = None
        self._implicit_tls = implicit_tls
        super().__init__(timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # smtplib names the server for STARTTLS's certificate check only when it was given
        # the host at construction; without a name, ``starttls`` raised ValueError.
        self._host = host
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        if self._implicit_tls is not None:
            # Wrapping takes the plain socket's descriptor over: from here on only the TLS
            # socket can shut it down, so it is the one ``abort`` must see before the
            # handshake starts.
            sock = self._implicit_tls.wrap_socket(
                sock, server_hostname=host, do_handshake_on_connect=False
            )
        with self._abort_lock:
            if self._aborted:
                sock.close()
                raise ConnectionAbortedError("send cut off")
            self._socket = sock
        if isinstance(sock, ssl.SSLSocket):
            sock.do_handshake()
        return sock

    def abort(self) -> None:
        with self._abort_lock:
            self._aborted = True
            # After STARTTLS ``sock`` is the TLS socket wrapping the first one.
            sock = self.sock or self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                # The plain socket's shutdown, even on a TLS socket: the TLS one's would
                # also drop its TLS state, under a handshake or read still using it.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _say_goodbye(smtp: smtplib.SMTP) -> None:
    """QUIT, politely, after the relay accepted the message: what it answers, or a
    connection it drops, changes nothing: the message is the relay's now, and reporting
    a failure would send it again (or dead-letter a message that went out)."""
    try:
        code, reply = smtp.docmd("QUIT")
    except (smtplib.SMTPException, OSError) as exc:
        log.info("the SMTP server dropped the connection after accepting a message: %s", exc)
        return
    if code != 221:
        log.info("the SMTP server answered QUIT with %s %r after accepting a message", code, reply)


def _classify_reply(code: int, error: bytes | str, prefix: str = "") -> DeliveryResult:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    detail = f"{prefix}SMTP {code}: {' '.join(text.split())[:200]}"
    if 500 <= code < 600:
        return DeliveryResult.failed(detail)
    # 4xx is "try again later" by definition; anything odd (e.g. -1 for an
    # unreadable greeting) is treated the same rather than losing the message.
    return DeliveryResult.retry(detail)


def _classify_refused(recipients: dict[str, tuple[int, bytes]]) -> DeliveryResult:
    address, (code, error) = next(iter(recipients.items()))
    return _classify_reply(code, error, prefix=f"{address} refused: ")
