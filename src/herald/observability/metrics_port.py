"""The metrics port of a process that delivers (``HERALD_METRICS_PORT``): prometheus_client's
WSGI app, served on a thread a connection, as its own server does, within limits it has
not.

prometheus_client's server gave each connection a thread and no time limit: a client
that connected and sent nothing held its thread, and a file descriptor, for ever, and
as many such clients as connected held as many. Here a connection has
``CONNECTION_SECONDS`` in all, to send its request and take its answer, and at most
``CONNECTIONS_AT_ONCE`` are served at once; one more is closed at once, unanswered.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger(__name__)

# Prometheus gives up on a scrape after 10 s by default (its scrape_timeout): a connection
# still open by then serves no one. A scrape reads the outbox for at most 3 s.
CONNECTION_SECONDS = 10.0
# Prometheus, a second one beside it for redundancy, and an operator's curl, with room.
CONNECTIONS_AT_ONCE = 8


def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    connection_seconds: float = CONNECTION_SECONDS,
    connections_at_once: int = CONNECTIONS_AT_ONCE,
) -> Callable[[], None]:
    """Serve ``registry`` at ``http://host:port/metrics`` on a thread of its own; returns
    what stops the server and frees the port. Raises ``OSError`` when the port cannot
    be had."""
    # The address and its family, as prometheus_client's server finds them: an IPv6
    # one, ::1 say, cannot be bound by a server of the default family.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _type, _proto, _name, address = infos[0]

    class Server(_BoundedServer):
        address_family = family

    server = make_server(
        str(address[0]), port, _at_metrics_only(make_wsgi_app(registry)), Server, _QuietHandler
    )
    assert isinstance(server, _BoundedServer)
    server.limit(connection_seconds, connections_at_once)
    thread = threading.Thread(target=server.serve_forever, name="metrics port", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop


def _at_metrics_only(metrics: WSGIApplication) -> WSGIApplication:
    """``metrics`` at ``/metrics``, and 404 on any other path: prometheus_client's app
    answered the metrics on every one, so a probe of ``/healthz`` here passed whatever
    the process's health."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":
            return metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found: the metrics are at /metrics\n"]

    return app


class _BoundedServer(ThreadingWSGIServer):
    """prometheus_client's server (a daemon thread a connection), closing a connection
    at its deadline, and one past ``connections_at_once`` at once."""

    connection_seconds = CONNECTION_SECONDS

    def limit(self, connection_seconds: float, connections_at_once: int) -> None:
        self.connection_seconds = connection_seconds
        self._slots = threading.BoundedSemaphore(connections_at_once)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Shut down, not closed: the thread serving it then stops reading or writing
        # whatever it was waiting for, and the connection is closed as it ends.
        deadline = threading.Timer(self.connection_seconds, _shut_down, (request,))
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone or cut off at its deadline is no error of the server's: the
        default printed its traceback to stderr for each one."""
        log.debug("metrics port: a connection ended early", exc_info=True)


class _QuietHandler(WSGIRequestHandler):
    """A request handler that writes no line to stderr for each scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _shut_down(connection: socket.socket) -> None:
    with suppress(OSError):  # closed already
        connection.shutdown(socket.SHUT_RDWR)
