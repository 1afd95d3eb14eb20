"""What the tests of `herald serve` as an operator runs it share: a signup event, the
CLI's message unwrapped, a SQLite file in the test's folder, and an app served by uvicorn
on a thread with a protocol of the test's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from tests.support.ports import free_port
from tests.support.processes import START_TIMEOUT_S


def signup(user: str, email: str) -> dict[str, Any]:
    return {
        "event_id": f"evt_{user}_signup",
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": "2025-11-03T10:00:00Z",
        "user_traits": {"email": email, "marketing_opt_in": True},
    }


def one_line(text: str) -> str:
    """The CLI's message with any wrapping undone."""
    return " ".join(text.split())


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'herald.db'}"


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering every HTTP request 200 ``hello``: the server's protocol is
    what a test of it tries."""
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@contextmanager
def served_on_a_thread(app: Any, protocol: type, **config: Any) -> Iterator[int]:
    """``app`` served by uvicorn speaking ``protocol`` (e.g. the request deadlines with
    test-sized times), on a thread of this process; yields its port, stops it after."""
    chosen = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=chosen, http=protocol, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        # A server that could not start (its port taken meanwhile) ends its thread: waited
        # for until it started, the test hung for ever.
        if not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {chosen} (see its log)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn not started on port {chosen} in {START_TIMEOUT_S}s")
        time.sleep(0.01)
    try:
        yield chosen
    finally:
        server.should_exit = True
        thread.join(10)
