"""A body the server is not reading yet when its deadline passes is not cut off: its
request pipelined behind a slow one, its client waiting for `100 Continue`, or the part
already sent filling the server's buffer while the app has not begun to read it. The
delay is the server's, not the client's."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from herald.cli.http_protocol import RequestDeadlineProtocol
from tests.support.serving import served_on_a_thread

APP_DELAY = 2.5  # longer than a whole request's deadline


class _QuickDeadlines(RequestDeadlineProtocol):
    headers_seconds = 0.5
    body_seconds = 1.5  # 2 s for a whole request


async def _length_of_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the length of the request's body; ``/slow`` only after ``APP_DELAY``."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(APP_DELAY)
    length, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        length, more = length + len(message["body"]), message["more_body"]
    text = str(length).encode()
    headers = [(b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": text})


@pytest.fixture
def port() -> Iterator[int]:
    with served_on_a_thread(_length_of_body, _QuickDeadlines, log_level="warning") as chosen:
        yield chosen


def _post(path: str, length: int, *, expect_continue: bool = False) -> bytes:
    expect = "Expect: 100-continue\r\n" if expect_continue else ""
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{expect}Content-Length: {length}\r\n"
    return head.encode() + b"\r\n"


def _send_in_background(connection: socket.socket, data: bytes) -> threading.Thread:
    """Sending more than the socket buffers hold blocks until the server reads it."""
    sending = threading.Thread(target=connection.sendall, args=(data,), daemon=True)
    sending.start()
    return sending


def _answers(connection: socket.socket, count: int) -> list[bytes]:
    """The bodies of the next ``count`` answers (each a 200 of a few digits)."""
    connection.settimeout(10)
    read = b""
    while read.count(b"HTTP/1.1 200") < count or not read[-1:].isdigit():
        chunk = connection.recv(65536)
        assert chunk, f"closed after {read!r}"
        read += chunk
    return [answer.rpartition(b"\r\n\r\n")[2] for answer in read.split(b"HTTP/1.1 200")[1:]]


MEBIBYTE = 2**20


def test_a_request_pipelined_behind_a_slow_one_is_read_once_its_turn_comes(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        requests = b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n" + _post("/", MEBIBYTE)
        sending = _send_in_background(connection, requests + b"x" * MEBIBYTE)

        assert _answers(connection, 2) == [b"0", b"%d" % MEBIBYTE]
        sending.join(10)


def test_a_body_the_app_reads_late_is_read_whole(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        sending = _send_in_background(connection, _post("/slow", MEBIBYTE) + b"x" * MEBIBYTE)

        assert _answers(connection, 1) == [b"%d" % MEBIBYTE]
        sending.join(10)


def test_a_client_waiting_for_100_continue_is_not_cut_off_while_the_app_waits(
    port: int,
) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(10)
        connection.sendall(_post("/slow", 5, expect_continue=True))
        assert connection.recv(1000) == b"HTTP/1.1 100 Continue\r\n\r\n"  # after APP_DELAY
        connection.sendall(b"hello")

        assert _answers(connection, 1) == [b"5"]
