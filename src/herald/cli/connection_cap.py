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
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from herald.observability.server_state import CONNECTIONS_REFUSED

RETRY_AFTER_SECONDS = 1
REFUSAL_LINGER_SECONDS = 1.0
REFUSALS_AT_ONCE = 100


class Refusals:
    """The refusals of one process still waiting for their clients to close."""

    waiting = 0


def refuse(
    transport: asyncio.Transport,
    app_state: dict[str, Any],
    default_headers: list[tuple[bytes, bytes]],
    *,
    at_once: int,
    linger_seconds: float,
) -> None:
    """Refuse the connection of ``transport``: answer ``503`` and close it after the
    client does (within ``linger_seconds``), or close it unanswered when ``at_once``
    refusals wait already. Counted on the counter ``app_state`` holds, if any (the
    API's; a test's app may have none). ``default_headers``: those uvicorn puts on
    every answer."""
    counter = app_state.get(CONNECTIONS_REFUSED)
    if counter is not None:
        counter.inc()
    if Refusals.waiting >= at_once or not transport.can_write_eof():
        transport.set_protocol(_Refused())
        transport.abort()
        return
    transport.write(_busy_answer(default_headers))
    transport.write_eof()
    transport.set_protocol(_Refused(transport, linger_seconds))


class _Refused(asyncio.Protocol):
    """A refused connection's protocol: reads nothing of what the client sends, and
    closes the connection once the client has closed its end, or after the wait."""

    def __init__(
        self, transport: asyncio.Transport | None = None, linger_seconds: float = 0.0
    ) -> None:
        # None: a connection closed at once, unanswered, which waits for nothing.
        self._give_up = None
        if transport is not None:
            Refusals.waiting += 1
            loop = asyncio.get_running_loop()
            self._give_up = loop.call_later(linger_seconds, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
            Refusals.waiting -= 1


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
