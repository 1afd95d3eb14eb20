"""The email channel: hand each message to an SMTP server (a relay or a sink).

The standard library's ``smtplib`` is blocking, so each send runs in a thread of the
provider's own (``SEND_THREADS`` of them) and the dispatcher's event loop stays free.
Connections outlive a send: a send takes an idle one if there is one (see ``SmtpProvider``).
A send cut off ends its connection from the event loop (see ``smtp_connection``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Literal

from herald.delivery.provider import DeliveryResult, SendRequest
from herald.delivery.providers.email_message import ascii_domain, build_message
from herald.delivery.providers.smtp_connection import AbortableSMTP, SendAttempt, quit_and_close
from herald.delivery.providers.smtp_pool import IdleConnections
from herald.delivery.providers.smtp_replies import classify_refused, classify_reply

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

    A send takes an idle connection of the provider's if it has one, else opens its own
    (TLS from the start with implicit TLS), says EHLO, optionally upgrades with STARTTLS
    and logs in; then it sends one message, and once the relay accepted it gives the
    connection back for a later send. Against a relay tens of milliseconds away a new
    connection costs about seven round trips before the first MAIL (connect, greeting,
    EHLO, STARTTLS and its handshake, EHLO, AUTH) and one for QUIT, while the message
    itself takes four (MAIL, RCPT, DATA, its content). A connection serves one send (one
    thread) at a time, as ``smtplib.SMTP`` is not safe to share between threads.

    Reuse never sends a message twice: a relay that dropped an idle connection (it
    disconnects before answering MAIL, or answers it ``421``) has taken nothing on it, so
    the same send opens a new connection and tries the message once there. Anything
    else, a timeout included (a slow relay is not a gone one), and whatever goes wrong
    after MAIL was accepted, is classified as it would be on a new connection. A
    connection is given back only after its message was accepted: one that failed, or
    whose send was cut off, is closed. The ``250`` that accepts the message ends the mail
    transaction (RFC 5321, 4.1.1.4), so the next MAIL needs no RSET first. Relays limit
    the messages per connection and drop idle ones, so a connection that carried
    ``messages_per_connection`` messages is closed with QUIT, and one idle for longer
    than ``idle_seconds`` is closed (QUIT, from another send thread) when the next send
    comes, rather than found dead. ``aclose`` closes the idle ones with QUIT.

    Args:
        name: the provider's name in configuration and the audit.
        host, port: the SMTP server.
        sender: the ``From`` header, e.g. ``"Herald <noreply@example.com>"``;
            the envelope sender is its address part.
        reply_to: the ``Reply-To`` header, if any.
        username, password: log in with these (inside TLS when there is TLS).
        credential_names: the environment variables the user name and password came
            from, named (their values never) when the relay refuses the login.
        tls: ``"starttls"`` upgrades the connection after the greeting,
            ``"implicit"`` speaks TLS from the first byte (``smtplib.SMTP_SSL``),
            ``"none"`` sends in clear text.
        tls_context: verifies the server's certificate and name; by default
            ``ssl.create_default_context()``, the system's trust store.
        timeout: seconds allowed for connecting and for each read or write on
            the socket (not for the whole exchange: the caller bounds that by
            cancelling ``send``, which ends the connection at once).
        clock: Unix time in seconds, used for the ``Date`` header.
        messages_per_connection: close a connection (QUIT) once it carried this many.
        idle_seconds: do not reuse a connection idle for longer than this.

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
        messages_per_connection: int = 100,
        idle_seconds: float = 30.0,
        credential_names: tuple[str, str] | None = None,
    ) -> None:
        self.name = name
        self.local = False
        self.host = host
        self.port = port
        self.sender = sender
        self.reply_to = reply_to
        self.username = username
        self._password = password
        self.credential_names = credential_names
        self.tls = tls
        self._tls_context = tls_context
        self.timeout = timeout
        self._clock = clock
        self.messages_per_connection = messages_per_connection
        self.idle_seconds = idle_seconds
        self._threads: ThreadPoolExecutor | None = None
        self._idle = IdleConnections()  # drained by ``aclose``

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
        attempt = SendAttempt()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="herald-smtp")
        send = functools.partial(
            self._send_blocking, attempt, message, ascii_domain(request.recipient)
        )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, send)
        except asyncio.CancelledError:
            # Cut off (the claim's deadline): the thread cannot be cancelled, so end its
            # connection, or it would go on and send the message after the dispatcher
            # recorded the attempt as unanswered, and the retry would send it again.
            attempt.abort()
            if attempt.accepted is not None:
                # The relay had taken the message, only the goodbye (or giving the
                # connection back) was left: it is sent, and recorded as unanswered it
                # would be sent again.
                return attempt.accepted
            raise

    async def aclose(self) -> None:
        """Close the idle connections (QUIT, all at once) and let the send threads end;
        idempotent. A send still running closes its connection when it ends."""
        idle = self._idle.drain()
        threads, self._threads = self._threads, None
        if threads is None:
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(threads, quit_and_close, smtp) for smtp in idle)
        )
        threads.shutdown(wait=False)

    def _send_blocking(
        self,
        attempt: SendAttempt,
        message: EmailMessage,
        recipient: str,
    ) -> DeliveryResult:
        idle = self._take_idle()
        if idle is not None:
            result = self._exchange(attempt, idle, message, recipient)
            if result is not None:
                return result
            # The relay had dropped it while it waited: nothing was sent on it.
            log.debug("the SMTP server %s:%s closed an idle connection", self.host, self.port)
        result = self._exchange(attempt, None, message, recipient)
        assert result is not None  # only a reused connection can be found dropped
        return result

    def _exchange(
        self,
        attempt: SendAttempt,
        reused: AbortableSMTP | None,
        message: EmailMessage,
        recipient: str,
    ) -> DeliveryResult | None:
        """Send ``message`` on ``reused``, or on a connection of its own when None, and
        classify the outcome; None when ``reused`` turned out dropped before MAIL was
        accepted (nothing was sent on it, and it is closed)."""
        where = f"{self.host}:{self.port}"
        context = None
        if reused is None and self.tls != "none":
            context = self._tls_context or ssl.create_default_context()
        smtp = reused or AbortableSMTP(
            timeout=self.timeout,
            implicit_tls=context if self.tls == "implicit" else None,
            generation=self._idle.generation,
        )
        kept = False
        try:
            attempt.use(smtp)
            if reused is None:
                self._open(smtp, context)
            # One recipient: refused, it raises SMTPRecipientsRefused (smtplib returns
            # the refused ones only when others were accepted), so returning is accepting.
            smtp.send_message(message, to_addrs=[recipient])
            accepted = attempt.accepted = DeliveryResult.sent(
                f"accepted by {where}", reference=message["Message-ID"]
            )
            smtp.messages_sent += 1
            kept = self._keep(attempt, smtp)
            if not kept:
                _say_goodbye(smtp)
        except OSError as exc:  # smtplib's errors included
            return self._failure(exc, attempt, smtp, reused=reused is not None)
        finally:
            if not kept:
                smtp.close()
        return accepted

    def _failure(
        self, exc: OSError, attempt: SendAttempt, smtp: AbortableSMTP, *, reused: bool
    ) -> DeliveryResult | None:
        """What ``exc``, raised while sending on ``smtp``, makes of the attempt; None when a
        ``reused`` connection turned out dropped before MAIL was accepted."""
        where = f"{self.host}:{self.port}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            return classify_refused(exc.recipients)
        if isinstance(exc, smtplib.SMTPAuthenticationError):  # only AUTH raises it
            return classify_reply(exc.smtp_code, exc.smtp_error, prefix=self._login_refused(exc))
        if isinstance(exc, smtplib.SMTPResponseException):
            if reused and exc.smtp_code == 421 and not smtp.mail_accepted:
                return None  # MAIL answered "closing": the relay let the idle one go
            return classify_reply(exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            # smtplib reports a read timeout as a disconnect; say which it was.
            if isinstance(exc.__context__, TimeoutError):
                return DeliveryResult.retry(f"timeout after {self.timeout:g} s talking to {where}")
            if reused and not smtp.mail_answered and not attempt.aborted:
                return None
            return DeliveryResult.retry(f"SMTP server {where} disconnected: {exc}")
        if isinstance(exc, smtplib.SMTPException):
            # What is left are capability mismatches (no STARTTLS, no usable AUTH
            # mechanism, no SMTPUTF8): configuration, not a passing problem.
            return DeliveryResult.failed(f"SMTP server {where}: {exc}")
        if isinstance(exc, TimeoutError):
            return DeliveryResult.retry(f"timeout after {self.timeout:g} s talking to {where}")
        # Refused connections, unreachable hosts, DNS and TLS trouble.
        return DeliveryResult.retry(f"cannot connect to {where}: {exc}")

    def _open(self, smtp: AbortableSMTP, context: ssl.SSLContext | None) -> None:
        """Connect a new connection, and take it through STARTTLS and login as configured;
        ``context`` checks the relay's certificate when TLS is on."""
        try:
            code, greeting = smtp.connect(self.host, self.port)
        except UnicodeError as exc:
            # The socket writes the host in ASCII (IDNA) before looking it up: a label over
            # 63 characters, or one IDNA cannot write, is refused on every attempt.
            raise smtplib.SMTPException(f"the host cannot be a DNS name ({exc})") from None
        if code != 220:
            raise smtplib.SMTPConnectError(code, greeting)
        if self.tls == "starttls":
            smtp.starttls(context=context)
        if self.username is not None:
            try:
                smtp.login(self.username, self._password or "")
            except smtplib.SMTPNotSupportedError:
                raise smtplib.SMTPException(self._no_login_offered()) from None
            except UnicodeEncodeError:
                # smtplib encodes the login in ASCII; its error quotes the character.
                raise smtplib.SMTPException(
                    "the user name or password has characters beyond ASCII, "
                    "which an SMTP login cannot send"
                ) from None

    def _login_refused(self, exc: smtplib.SMTPAuthenticationError) -> str:
        """What an attempt whose login the relay refused says before the relay's words,
        which alone did not say it was the login, not the message, that was refused."""
        if not 500 <= exc.smtp_code < 600:
            return "the relay cannot take the login for now: "
        where = ""
        if self.credential_names is not None:
            where = " in {} and {}".format(*self.credential_names)
        return f"the relay refused the login (check the user name and password{where}): "

    def _no_login_offered(self) -> str:
        """Why a login was not tried: the relay's EHLO answer named no AUTH. Many relays
        offer it only once the connection is encrypted, which smtplib's words did not say."""
        hint = ""
        if self.tls == "none":
            hint = " (without TLS: try `tls: starttls`, as many relays offer it only then)"
        return f"the relay offers no login on this connection{hint}"

    def _take_idle(self) -> AbortableSMTP | None:
        """The connection given back last, if any; those idle for too long are closed."""
        taken, stale = self._idle.take(self.idle_seconds)
        threads = self._threads
        for smtp in stale:
            # On another thread: a relay that no longer answers would hold this send
            # for the timeout.
            try:
                if threads is None:
                    raise RuntimeError("closed")
                threads.submit(quit_and_close, smtp)
            except RuntimeError:  # the provider was closed meanwhile
                smtp.close()
        return taken

    def _keep(self, attempt: SendAttempt, smtp: AbortableSMTP) -> bool:
        """Give ``smtp`` back for a later send, unless it carried its share of messages,
        its send was cut off, or the provider was closed since it was opened."""
        if smtp.messages_sent >= self.messages_per_connection:
            return False
        return self._idle.give_back(attempt, smtp)


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
