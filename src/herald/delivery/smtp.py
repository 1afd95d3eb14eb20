"""The email channel: hand each message to an SMTP server (a relay or a sink).

The standard library's ``smtplib`` is blocking, so each send runs in a worker
thread via ``asyncio.to_thread`` and the dispatcher's event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from herald.delivery.provider import DeliveryResult, SendRequest
from herald.domain.recipients import email_problem


class SmtpProvider:
    """Delivers messages through an SMTP server; implements ``Provider``.

    Each send opens its own connection, says EHLO, optionally upgrades with
    STARTTLS and logs in, sends one message and quits. A shared connection
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
        username, password: log in with these (after STARTTLS when enabled).
        starttls: upgrade the connection with STARTTLS, verifying the
            server's certificate against the system's trust store.
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
        starttls: bool = False,
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
        self.starttls = starttls
        self.timeout = timeout
        self._clock = clock

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
        smtp = _AbortableSMTP(timeout=self.timeout)
        try:
            return await asyncio.to_thread(self._send_blocking, smtp, message, request.recipient)
        except asyncio.CancelledError:
            # Cut off (the claim's deadline): the thread cannot be cancelled, so end its
            # connection, or it would go on and send the message after the dispatcher
            # recorded the attempt as unanswered, and the retry would send it again.
            smtp.abort()
            raise

    async def aclose(self) -> None:
        """Nothing to release: connections do not outlive a send."""

    def _send_blocking(
        self, smtp: _AbortableSMTP, message: EmailMessage, recipient: str
    ) -> DeliveryResult:
        where = f"{self.host}:{self.port}"
        try:
            with smtp:
                code, greeting = smtp.connect(self.host, self.port)
                if code != 220:
                    raise smtplib.SMTPConnectError(code, greeting)
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(message, to_addrs=[recipient])
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
        if refused:  # only possible with several recipients; kept for safety
            return _classify_refused(refused)
        return DeliveryResult.sent(f"accepted by {where}", reference=message["Message-ID"])


class _AbortableSMTP(smtplib.SMTP):
    """An ``smtplib.SMTP`` whose exchange another thread can end at any point: ``abort``
    shuts its socket down, so a blocked read or write in the sending thread ends at once,
    and a connection still being opened is closed as soon as it is."""

    def __init__(self, *, timeout: float) -> None:
        self._abort_lock = threading.Lock()
        self._aborted = False
        self._socket: socket.socket | None = None
        super().__init__(timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        with self._abort_lock:
            if self._aborted:
                sock.close()
                raise ConnectionAbortedError("send cut off")
            self._socket = sock
        return sock

    def abort(self) -> None:
        with self._abort_lock:
            self._aborted = True
            # After STARTTLS ``sock`` is the TLS socket wrapping the first one.
            sock = self.sock or self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


def build_message(
    request: SendRequest, *, sender: str, reply_to: str | None, date: datetime
) -> EmailMessage:
    """The email for ``request``: text body, plus an HTML alternative when ``request.html``.

    Raises ``ValueError`` for headers the email package cannot encode, and for a
    recipient that is not one plain address (the envelope and the ``To`` header would
    each read it their own way).
    """
    problem = email_problem(request.recipient)
    if problem is not None:
        raise ValueError(f"the recipient is not one plain address ({problem})")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = request.recipient
    if reply_to:
        message["Reply-To"] = reply_to
    # Rendered templates often end with a newline, which a header cannot hold.
    message["Subject"] = " ".join(request.subject.split())
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{request.message_id}@herald>"
    message["X-Herald-Message-Id"] = request.message_id
    # RFC 3834: tells vacation responders not to answer an automated message.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(request.body)
    if request.html:
        message.add_alternative(request.html, subtype="html")
    return message


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
