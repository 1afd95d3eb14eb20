"""An SMTP connection that another thread can end at once, and the send that uses it:
what lets a send cut off at its claim's deadline end its exchange with the relay there
and then, rather than go on and deliver the message after the attempt was given up."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
from collections.abc import Sequence

from herald.delivery.provider import DeliveryResult


class SendAttempt:
    """One send: the connection it is using, which ``abort`` (from another thread) ends
    at once, and the relay's acceptance of its message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.aborted = False
        self._smtp: AbortableSMTP | None = None
        # Set once the relay accepted the message (250 after DATA): from then on it is sent,
        # whatever happens to the rest of the session.
        self.accepted: DeliveryResult | None = None

    def use(self, smtp: AbortableSMTP) -> None:
        """From now on ``abort`` ends ``smtp``; raises if the send was cut off already."""
        with self._lock:
            if self.aborted:
                raise ConnectionAbortedError("send cut off")
            self._smtp = smtp

    def release(self) -> bool:
        """Put the connection out of ``abort``'s reach, to be given back; False if the
        send was cut off already (its connection is ended)."""
        with self._lock:
            if self.aborted:
                return False
            self._smtp = None
            return True

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            smtp = self._smtp
        if smtp is not None:
            smtp.abort()


class AbortableSMTP(smtplib.SMTP):
    """An ``smtplib.SMTP`` whose exchange another thread can end at any point: ``abort``
    shuts its socket down, so a blocked read or write in the sending thread ends at once,
    and a connection still being opened is closed as soon as it is.

    With ``implicit_tls`` the connection is wrapped in TLS before the greeting, as
    ``smtplib.SMTP_SSL`` does (verifying the certificate for the host connected to), and
    a TLS handshake in progress can be ended too."""

    def __init__(
        self,
        *,
        timeout: float,
        implicit_tls: ssl.SSLContext | None = None,
        generation: int = 0,
    ) -> None:
        self._abort_lock = threading.Lock()
        self._aborted = False
        self._socket: socket.socket | None = None
        self._implicit_tls = implicit_tls
        self.generation = generation
        self.messages_sent = 0
        # Whether the relay answered the current message's MAIL, and accepted it: until
        # it answers, a connection that turns out closed has carried nothing of it.
        self.mail_answered = False
        self.mail_accepted = False
        super().__init__(timeout=timeout)

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self.mail_answered = self.mail_accepted = False
        code, reply = super().mail(sender, options)
        self.mail_answered, self.mail_accepted = True, code == 250
        return code, reply

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

    def close(self) -> None:
        super().close()
        # A socket whose TLS handshake failed, or was cut off, never became ``sock``, which
        # is all smtplib closes: it would stay open until the garbage collector found it.
        with self._abort_lock:
            sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

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


def quit_and_close(smtp: smtplib.SMTP) -> None:
    """QUIT an idle connection and close it; whatever the relay answers, if anything."""
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.docmd("QUIT")
    smtp.close()
