"""The HTTP protocol ``herald serve`` speaks: uvicorn's, with a deadline for a request's
headers.

uvicorn times a connection out only while it idles between requests. A client that
connects and sends nothing, or a request line and then a header a minute, held its
connection, and a file descriptor, for ever: every such connection is taken before any
token is read, so anyone who reaches the port could open them until the process ran out
of descriptors and refused every client. A request's headers must now arrive whole
within ``HEADERS_SECONDS`` of the connection, or of the request's first byte on a
connection kept alive; the connection is closed otherwise. The body is not timed here:
the routes read it only once its token was checked, and reading waits on the server as
well as on the client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADERS_SECONDS = 30.0


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers do not
    arrive whole within ``headers_seconds``.

    One timer a connection, not one a request: a request only notes when its headers
    began, and the timer, when it fires, closes the connection if they are overdue, or
    looks again when they would be. A timer set and cancelled for every request cost a
    few microseconds of each one under load."""

    headers_seconds = HEADERS_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # When the headers now awaited began to be: the connection, then each request's
        # first byte; None while none are awaited (a request being answered, or idle
        # between requests, which uvicorn's keep-alive timeout bounds).
        self._awaited_since: float | None = None
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._awaited_since = self.loop.time()
        self._watch = self.loop.call_later(self.headers_seconds, self._look)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._awaited_since is None:  # the first request's time began with the connection
            self._awaited_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._awaited_since = None
        super().on_headers_complete()

    def _look(self) -> None:
        now = self.loop.time()
        since = self._awaited_since
        if since is not None and now - since >= self.headers_seconds:
            self._watch = None
            if not self.transport.is_closing():
                self.transport.close()
            return
        wait = self.headers_seconds if since is None else since + self.headers_seconds - now
        self._watch = self.loop.call_later(wait, self._look)
