"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts.

Usage::

    with SmtpSink() as sink:
        ...  # send to sink.host, sink.port
        message = sink.messages[0].message  # an email.message.EmailMessage

    sink.auth_reply = "454 4.7.0 try later"   # refuse every login with this
    sink.rcpt_reply = "451 4.3.0 try later"   # answer every RCPT TO with this
    sink.data_reply = "550 5.7.1 rejected"    # answer DATA with this
    sink.rcpt_delay = 2.0                      # wait this long before answering RCPT TO
    sink.quit_reply = "421 4.4.2 closing"      # answer QUIT with this instead of 221
    sink.quit_delay = 2.0                      # wait this long before answering QUIT
    sink.hang_up("421 4.4.2 idle too long")    # close every open connection now

With ``credentials=("user", "secret")`` the sink offers AUTH (with or without TLS) and
refuses mail from clients that have not logged in with exactly those; with
``auth_after_starttls=True`` too, it offers AUTH only once STARTTLS is done, as many relays do.

With ``tls="starttls"`` it offers STARTTLS, with ``tls="implicit"`` it speaks TLS from the
first byte (SMTPS, as on port 465), both with ``tls_context`` (see ``tests.support.tls``);
each ``ReceivedEmail`` says whether it came over TLS.

With ``smtputf8=False`` it does not offer SMTPUTF8 (RFC 6531), as many relays do not:
it then takes only addresses in ASCII.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from ssl import SSLContext
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass(frozen=True)
class ReceivedEmail:
    """One accepted message: the envelope and the raw content."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool = False

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)  # policy.default builds EmailMessage
        return parsed


class SmtpSink:
    """Starts aiosmtpd's threaded ``Controller`` on an ephemeral port; a context manager."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        tls: Literal["starttls", "implicit"] | None = None,
        tls_context: SSLContext | None = None,
        smtputf8: bool = True,
        auth_after_starttls: bool = False,
    ) -> None:
        if (tls is None) != (tls_context is None):
            raise ValueError("tls and tls_context go together")
        if auth_after_starttls and (credentials is None or tls != "starttls"):
            raise ValueError("auth_after_starttls needs credentials and tls='starttls'")
        self.auth_reply: str | None = None
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.rcpt_delay = 0.0
        self.quit_reply: str | None = None
        self.quit_delay = 0.0
        self.credentials = credentials
        self.tls = tls
        self.tls_context = tls_context
        self.smtputf8 = smtputf8
        self.auth_after_starttls = auth_after_starttls
        self._messages: list[ReceivedEmail] = []
        self._logins: list[str] = []
        self._mail_sessions_ended = 0
        self._connections = 0
        self._quits = 0
        self._open: set[_SessionCountingSMTP] = set()  # used on the server's loop alone
        self._lock = threading.Lock()
        self._controller: _EphemeralPortController | None = None

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("SmtpSink is not running")
        return self._controller.port

    @property
    def messages(self) -> list[ReceivedEmail]:
        """Messages accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def logins(self) -> list[str]:
        """User names of successful AUTH commands so far."""
        with self._lock:
            return list(self._logins)

    @property
    def mail_sessions_ended(self) -> int:
        """Connections that began a mail (sent MAIL FROM) and have since been closed."""
        with self._lock:
            return self._mail_sessions_ended

    @property
    def connections(self) -> int:
        """Connections clients opened so far."""
        with self._lock:
            return self._connections

    @property
    def quits(self) -> int:
        """QUIT commands received so far."""
        with self._lock:
            return self._quits

    def hang_up(self, reply: str | None = None) -> None:
        """Close every open connection now, after sending ``reply`` if given, as a relay
        does with connections idle for too long."""
        if self._controller is None:
            raise RuntimeError("SmtpSink is not running")

        async def close_all() -> None:
            for protocol in list(self._open):
                if protocol.transport is not None:
                    if reply is not None:
                        protocol.transport.write(f"{reply}\r\n".encode())
                    protocol.transport.close()

        asyncio.run_coroutine_threadsafe(close_all(), self._controller.loop).result(timeout=5)

    def start(self) -> SmtpSink:
        options: dict[str, Any] = {"enable_SMTPUTF8": self.smtputf8}
        if self.credentials is not None:
            # aiosmtpd does not count implicit TLS as TLS, so it cannot insist on it.
            options.update(
                authenticator=self._authenticate, auth_require_tls=self.auth_after_starttls
            )
        if self.tls == "starttls":
            options.update(tls_context=self.tls_context)
        elif self.tls == "implicit":
            options.update(ssl_context=self.tls_context)
        self._controller = _EphemeralPortController(
            _Handler(self),
            hostname=self.host,
            port=0,
            # Naming the server avoids aiosmtpd's socket.getfqdn(), a DNS lookup.
            server_hostname="sink.herald.test",
            **options,
        )
        self._controller.start()
        with self._lock:
            self._connections = 0  # aiosmtpd's own check that the server answers
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self, email: ReceivedEmail) -> None:
        with self._lock:
            self._messages.append(email)

    def _mail_session_ended(self) -> None:
        with self._lock:
            self._mail_sessions_ended += 1

    def _connection_opened(self) -> None:
        with self._lock:
            self._connections += 1

    def _quit_received(self) -> None:
        with self._lock:
            self._quits += 1

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        if self.auth_reply is not None:
            return AuthResult(success=False, handled=False, message=self.auth_reply)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        if (login, password) != self.credentials:
            return AuthResult(success=False, handled=False)
        with self._lock:
            self._logins.append(login)
        return AuthResult(success=True)


class _Handler:
    """aiosmtpd handler hooks; aiosmtpd finds them by name."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # Enforced here rather than with aiosmtpd's auth_required, which warns
        # loudly when combined with plain-text AUTH.
        if self._sink.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        session.began_a_mail = True
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._sink.rcpt_delay:
            await asyncio.sleep(self._sink.rcpt_delay)  # a slow (or tarpitting) server
        if self._sink.rcpt_reply is not None:
            return self._sink.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._sink.data_reply is not None:
            return self._sink.data_reply
        content = envelope.original_content or envelope.content
        tls = server.transport.get_extra_info("ssl_object") is not None
        self._sink._accept(ReceivedEmail(envelope.mail_from, list(envelope.rcpt_tos), content, tls))
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self._sink._quit_received()
        if self._sink.quit_delay:
            await asyncio.sleep(self._sink.quit_delay)  # a relay slow to close the session
        return self._sink.quit_reply or "221 Bye"


class _SessionCountingSMTP(SMTP):
    """Tells the sink when a connection opens, and when one that began a mail is closed:
    after that, nothing more can arrive on it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again, with the TLS transport, after STARTTLS: the same connection.
        opened = self._original_transport is None
        super().connection_made(transport)
        if opened:
            self.event_handler._sink._open.add(self)
            self.event_handler._sink._connection_opened()

    def connection_lost(self, error: Exception | None) -> None:
        began_a_mail = getattr(self.session, "began_a_mail", False)
        self.event_handler._sink._open.discard(self)
        super().connection_lost(error)
        if began_a_mail:
            self.event_handler._sink._mail_session_ended()


class _EphemeralPortController(Controller):
    """A ``Controller`` that may listen on port 0.

    aiosmtpd connects to its own ``port`` once after binding, to check that the
    server answers; with port 0 that would fail. Reading the port the OS picked
    just before that check makes port 0 work (relies on aiosmtpd 1.4 internals:
    ``server`` is set and ``_trigger_server`` runs after binding).
    """

    def factory(self) -> SMTP:
        return _SessionCountingSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
