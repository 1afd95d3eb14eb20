"""What a connection past an API process's cap (``--max-connections``) gets: ``503``
with ``Retry-After``, at once, and then its close.

Every connection a process keeps open holds a file descriptor, and the process has a
limited number of them (``ulimit -n``): many connections at once, a flood or a client
that forgets to close its own, took them all, and then the database's connections, the
shared metrics' files and the outbox file could not be opened either. Past the cap a
connection is accepted and refused rather than left waiting in the listen queue, which
a client cannot tell from a server that hangs: a load balancer takes the ``503`` as a
cue to try another process, a client to try again after ``Retry-After``.

The answer is sent without reading the request, and the connection then waits, up to
``REFUSAL_LINGER_SECONDS``, for the client to close its end: closed at once, with the
client's request unread, the system would reset the connection, and a client can lose
the answer to the reset before it reads it. At most ``REFUSALS_AT_ONCE`` refusals
wait so in a process; past them a connection is closed at once without an answer, so
that the process holds at most its cap and those few more.

Refusals are counted in ``herald_connections_refused_total`` and said in the log when
they begin, then in a line every ``REFUSALS_SAID_EVERY_SECONDS`` at most while they go
on.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.server import ServerState

from herald.observability.server_state import CONNECTIONS_REFUSED

RETRY_AFTER_SECONDS = 1
REFUSAL_LINGER_SECONDS = 1.0
REFUSALS_AT_ONCE = 100
# A line when refusals begin, then at most one every so often while they go on: one a
# refusal would bury everything else under a flood.
REFUSALS_SAID_EVERY_SECONDS = 10.0

log = logging.getLogger(__name__)


class Refusals:
    """The refusals of one server (one a process): those still waiting for their
    clients to close, and those not yet said in the log."""

    def __init__(self) -> None:
        self.waiting = 0
        self.unsaid = 0
        self.said_at: float | None = None

    def say(self, now: float, cap: int) -> None:
        self.unsaid += 1
        if self.said_at is None or now - self.said_at >= REFUSALS_SAID_EVERY_SECONDS:
            log.warning(
                "refusing connections: this API process has %d connections open, the "
                "most HERALD_MAX_CONNECTIONS allows; %d refused (answered 503, or closed "
                "at once in a flood) since the last line, and a line every %g s while "
                "they go on",
                cap,
                self.unsaid,
                REFUSALS_SAID_EVERY_SECONDS,
            )
            self.said_at, self.unsaid = now, 0


# By server: a test runs one after another in a process.
_REFUSALS: weakref.WeakKeyDictionary[ServerState, Refusals] = weakref.WeakKeyDictionary()


def refuse(
    transport: asyncio.Transport,
    server_state: ServerState,
    app_state: dict[str, Any],
    *,
    cap: int,
    at_once: int,
    linger_seconds: float,
) -> None:
    """Refuse the connection of ``transport``, one past ``cap`` on the server of
    ``server_state``: answer ``503`` and close it after the client does (within
    ``linger_seconds``), or close it unanswered when ``at_once`` refusals wait already.
    Counted on the counter ``app_state`` holds, if any (the API's; a test's app may
    have none)."""
    refusals = _REFUSALS.get(server_state)
    if refusals is None:
        refusals = _REFUSALS[server_state] = Refusals()
    refusals.say(asyncio.get_running_loop().time(), cap)
    counter = app_state.get(CONNECTIONS_REFUSED)
    if counter is not None:
        counter.inc()
    if refusals.waiting >= at_once or not transport.can_write_eof():
        transport.set_protocol(_Refused())
        transport.abort()
        return
    transport.write(_busy_answer(server_state.default_headers))
    transport.write_eof()
    transport.set_protocol(_Refused(refusals, transport, linger_seconds))


class _Refused(asyncio.Protocol):
    """A refused connection's protocol: reads nothing of what the client sends, and
    closes the connection once the client has closed its end, or after the wait."""

    def __init__(
        self,
        refusals: Refusals | None = None,
        transport: asyncio.Transport | None = None,
        linger_seconds: float = 0.0,
    ) -> None:
        # None: a connection closed at once, unanswered, which waits for nothing.
        self._refusals = refusals
        self._give_up = None
        if refusals is not None and transport is not None:
            refusals.waiting += 1
            loop = asyncio.get_running_loop()
            self._give_up = loop.call_later(linger_seconds, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._give_up is not None and self._refusals is not None:
            self._give_up.cancel()
            self._refusals.waiting -= 1


def _busy_answer(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    text = b"this server has as many connections open as it keeps: try again in a moment"
    lines = [STATUS_LINE[503]]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"retry-after: %d\r\n" % RETRY_AFTER_SECONDS,
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(text),
        b"connection: close\r\n\r\n",
        text,
    ]
    return b"".join(lines)
