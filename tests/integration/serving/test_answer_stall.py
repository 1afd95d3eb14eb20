"""A client that stops taking a large answer loses its connection, and the server the
answer's unsent rest, rather than keeping both for as long as the client stays
connected; a client taking an answer slowly but steadily gets all of it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from herald.cli.http_protocol import RequestDeadlineProtocol
from tests.support.serving import served_on_a_thread

ANSWER = 16 * 2**20  # an audit page can be this large: more than the buffers hold


class _QuickStall(RequestDeadlineProtocol):
    answer_stall_seconds = 1.0


async def _large_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", str(ANSWER).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"x" * ANSWER})


@pytest.fixture
def port() -> Iterator[int]:
    with served_on_a_thread(_large_answer, _QuickStall, log_level="warning") as chosen:
        yield chosen


def _ask(port: int) -> socket.socket:
    connection = socket.socket()
    connection.connect(("127.0.0.1", port))
    connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    connection.settimeout(10)
    return connection


def _read_all(connection: socket.socket, *, pause: float = 0.0) -> int:
    """Bytes read until the server ends the connection (a reset included)."""
    read = 0
    try:
        while chunk := connection.recv(2**22):
            read += len(chunk)
            time.sleep(pause)
    except ConnectionResetError:
        pass
    return read


def test_an_answer_the_client_stops_taking_is_dropped_with_its_connection(port: int) -> None:
    with _ask(port) as connection:
        time.sleep(3.0)  # takes nothing, well past the stall's limit

        assert _read_all(connection) < ANSWER  # what the buffers held, no more


def test_an_answer_taken_slowly_but_steadily_arrives_whole(port: int) -> None:
    with _ask(port) as connection:
        # Under the limit between reads, though the whole takes longer than it.
        began = time.monotonic()
        assert _read_all(connection, pause=0.1) > ANSWER
        assert time.monotonic() - began > 1.0
