"""A TCP proxy on a free loopback port, in front of a real server, that a test can cut:
the network between Herald and its database as an operator's outage makes it (a
PostgreSQL restart, a failover, a firewall change), without touching the server, which
other tests and people share."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from sqlalchemy.engine import make_url


class TcpProxy:
    """Forwards each connection to ``127.0.0.1:<port>`` to ``upstream``. ``cut()`` drops
    every connection and refuses new ones (as a server that is down); ``restore()``
    accepts them again, on the same port."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def url_for(self, database_url: str) -> str:
        """``database_url`` (whose server is ``upstream``) reached through this proxy."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def _call(self, work: Any) -> Any:
        done: Future[Any] = asyncio.run_coroutine_threadsafe(work, self._loop)
        return done.result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._forward, "127.0.0.1", self.port, reuse_address=True
            )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _forward(self, client_in: asyncio.StreamReader, client_out: Any) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_out.transport.abort()
            return
        ends = {client_out.transport, server_out.transport}
        self._transports |= ends
        await asyncio.gather(_pipe(client_in, server_out), _pipe(server_in, client_out))
        self._transports -= ends


async def _pipe(source: asyncio.StreamReader, sink: Any) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


@contextlib.contextmanager
def proxied(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of ``database_url``'s server, and the URL that goes through it."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield proxy, proxy.url_for(database_url)
    finally:
        proxy.close()
