"""Headers past their limit are refused as they arrive: a client sending a header of
hundreds of megabytes within the time headers have made the server hold it all (twice
over, as it was joined), and its parsing held up every other request meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from herald.cli.http_protocol import MOST_HEADER_BYTES, RequestDeadlineProtocol
from tests.support.serving import hello_app, served_on_a_thread


@pytest.fixture
def port() -> Iterator[int]:
    with served_on_a_thread(hello_app, RequestDeadlineProtocol, log_level="warning") as chosen:
        yield chosen


def _answer(connection: socket.socket) -> bytes:
    """What the server sends until it closes ``connection`` (at most 10 s)."""
    connection.settimeout(10)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_headers_past_the_limit_are_refused_with_431_as_they_arrive(port: int) -> None:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: ")
        try:
            for _ in range(64):  # 4 MiB, a chunk at a time, the headers never ending
                connection.sendall(b"a" * 65536)
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed once refused: what arrives after is not read
        answer = _answer(connection)

    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert f"at most {MOST_HEADER_BYTES:,} bytes".encode() in answer
    assert time.monotonic() - began < 10  # not the 30 s the headers are given


def test_headers_within_the_limit_are_answered_on_a_connection_kept_alive(port: int) -> None:
    padding = b"b" * (MOST_HEADER_BYTES // 2)
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + padding + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(10)
        for _ in range(3):
            for start in range(0, len(request), 4096):  # in many small chunks
                connection.sendall(request[start : start + 4096])
            answer = connection.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hello")


def test_headers_past_the_limit_are_refused_though_they_arrive_at_once(port: int) -> None:
    """Counted from the second read of the socket on, a head sent whole in one write
    passed at nearly twice the limit the README gives."""
    padding = b"c" * (MOST_HEADER_BYTES + 10_000)
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + padding + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(request)
        answer = _answer(connection)

    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def _head_of(size: int) -> bytes:
    """A GET whose line and headers take exactly ``size`` bytes."""
    start, end = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Padding: ", b"\r\n\r\n"
    return start + b"c" * (size - len(start) - len(end)) + end


def test_a_head_of_exactly_the_limit_is_answered_sent_whole_or_in_pieces(port: int) -> None:
    request = _head_of(MOST_HEADER_BYTES)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(10)
        connection.sendall(request)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        for start in range(0, len(request), 1000):
            connection.sendall(request[start : start + 1000])
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_requests_pipelined_in_one_write_are_each_answered(port: int) -> None:
    small = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            small
            + _head_of(MOST_HEADER_BYTES // 2)
            + small
            + b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        answers = _answer(connection)
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 4


def test_a_refused_head_is_answered_once_and_what_follows_it_is_not_served(port: int) -> None:
    refused = _head_of(MOST_HEADER_BYTES + 1000)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed once refused
            connection.sendall(refused + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = _answer(connection)
    assert answer.startswith(b"HTTP/1.1 431 ") and answer.count(b"HTTP/1.1") == 1


def test_a_post_waiting_for_100_continue_is_answered(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(10)
        connection.sendall(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        time.sleep(0.2)
        connection.sendall(b"hello")
        answer = _answer(connection)
    assert b"HTTP/1.1 200 OK\r\n" in answer


def test_a_websocket_upgrade_past_the_limit_is_refused_with_431_and_no_error(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The parser asks for the upgrade once the head has ended: handed the refused head,
    uvicorn's upgrade read the request's method, which only the app's request has, and
    every such request logged a traceback as a fatal error of the connection."""
    upgrade = (
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    with (
        caplog.at_level(logging.WARNING),
        socket.create_connection(("127.0.0.1", port)) as connection,
    ):
        connection.sendall(upgrade + b"X-Padding: " + b"e" * MOST_HEADER_BYTES + b"\r\n\r\n")
        answer = _answer(connection)

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert [record.getMessage() for record in caplog.records] == []


async def _slow_hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``hello_app``, answering each request a tenth of a second late."""
    await asyncio.sleep(0.1)
    await hello_app(scope, receive, send)


def test_a_head_past_the_limit_pipelined_behind_a_request_is_refused_after_its_answer() -> None:
    """The request before it, still being answered, lost its answer: the connection was
    closed at once, with neither that answer nor the 431."""
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    refused = _head_of(MOST_HEADER_BYTES + 1000)
    with (
        served_on_a_thread(_slow_hello_app, RequestDeadlineProtocol, log_level="warning") as port,
        socket.create_connection(("127.0.0.1", port)) as connection,
    ):
        connection.sendall(request + request + refused + request)
        answer = _answer(connection)

    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert answer.index(b"HTTP/1.1 431 ") > answer.rindex(b"hello")
    assert answer.count(b"HTTP/1.1 ") == 3  # nothing after the 431
