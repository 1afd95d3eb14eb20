"""A real HTTP server on 127.0.0.1 that records requests and answers from a script.

Usage::

    with HttpReceiver([CannedResponse(503), CannedResponse(503), CannedResponse(200)]) as rx:
        ...  # POST to rx.url three times
        assert [r.method for r in rx.requests] == ["POST"] * 3

Responses are used in order, one per request; once they run out every request
gets ``default`` (200 with ``{}`` unless told otherwise). Given a ``tls_context``
it speaks HTTPS instead.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class CannedResponse:
    """What the receiver answers to one request.

    ``delay`` is in seconds and is spent before answering, to play a slow
    receiver; ``body_delay`` is spent between the status and headers and the body,
    to play one whose answer stalls after its status. Stopping the receiver cuts
    either short.
    """

    status: int = 200
    body: bytes = b"{}"
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0
    body_delay: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as received. Header names are lowercased."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """A threaded ``http.server`` on an ephemeral 127.0.0.1 port; a context manager."""

    def __init__(
        self,
        responses: Iterable[CannedResponse] = (),
        default: CannedResponse | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.default = default or CannedResponse()
        self._tls_context = tls_context
        self._script: deque[CannedResponse] = deque(responses)
        self._received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HttpReceiver is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "http" if self._tls_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The requests received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    def respond_with(self, *responses: CannedResponse) -> None:
        """Queue more scripted responses after those already queued."""
        with self._lock:
            self._script.extend(responses)

    def start(self) -> HttpReceiver:
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        if self._tls_context is not None:
            # The handshake is made on accepting: one a client refuses (a certificate it
            # does not trust) is an error of that accept, and the server goes on.
            self._server.socket = self._tls_context.wrap_socket(
                self._server.socket, server_side=True
            )
        # A short poll interval keeps stop() quick; the default is half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, request: ReceivedRequest) -> CannedResponse:
        with self._lock:
            self._received.append(request)
            return self._script.popleft() if self._script else self.default


def _handler_for(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = ReceivedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length),
            )
            response = receiver._record(request)
            if response.delay and receiver._stopping.wait(response.delay):
                return  # stopping: the client has long given up
            try:
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if response.body_delay:
                    self.wfile.flush()
                    if receiver._stopping.wait(response.body_delay):
                        return
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up, which is what some tests want

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
