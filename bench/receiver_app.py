"""A fast webhook receiver for the delivery stage: answers 200 and counts what it got.

Run it as ``python bench/receiver_app.py --host 127.0.0.1 --port 8002``. Routes:

- ``POST /hook``: answers 200 ``{}``; counts the request and its ``Idempotency-Key``.
- ``GET /healthz``: 200, for the harness's start-up check.
- ``GET /stats``: ``{"requests": n, "distinct_keys": n, "missing_key": n}``, where
  ``requests`` counts every ``POST /hook``, ``missing_key`` those without the header,
  and ``requests - missing_key - distinct_keys`` is the number of repeated keys.
- ``GET /keys``: the distinct keys received, as a JSON list.

It is a raw ASGI app (no framework) under uvicorn with uvloop and httptools, one
process, no access log, so that it costs little of the CPU the measured worker needs.
It keeps everything in memory (about 100 bytes per message).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
IDEMPOTENCY_KEY = b"idempotency-key"


class Receiver:
    """The ASGI app; its counters live on the instance, one instance per process."""

    def __init__(self) -> None:
        self.requests = 0
        self.missing_key = 0
        self.keys: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "POST" and path == "/hook":
            await _drain_body(receive)
            self._count(dict(scope["headers"]).get(IDEMPOTENCY_KEY))
            await _respond(send, 200, {})
        elif method == "GET" and path == "/healthz":
            await _respond(send, 200, {"status": "ok"})
        elif method == "GET" and path == "/stats":
            await _respond(send, 200, self.stats())
        elif method == "GET" and path == "/keys":
            await _respond(send, 200, sorted(self.keys))
        else:
            await _respond(send, 404, {"detail": "not found"})

    def _count(self, key: bytes | None) -> None:
        self.requests += 1
        if key is None:
            self.missing_key += 1
        else:
            self.keys.add(key.decode("latin-1"))

    def stats(self) -> dict[str, int]:
        """The counters as ``GET /stats`` returns them."""
        return {
            "requests": self.requests,
            "distinct_keys": len(self.keys),
            "missing_key": self.missing_key,
        }


async def _drain_body(receive: Receive) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)


async def _respond(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve a fresh ``Receiver`` until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(
        Receiver(),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
