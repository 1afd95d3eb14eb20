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
    arrive whole within ``headers_seconds``."""

    headers_seconds = HEADERS_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()  # a request on a connection kept alive starts its own time

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()

    def _await_headers(self) -> None:
        if self._headers_due is None:
            self._headers_due = self.loop.call_later(self.headers_seconds, self._too_slow)

    def _headers_arrived(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _too_slow(self) -> None:
        self._headers_due = None
        if not self.transport.is_closing():
            self.transport.close()
