"""Headers past their limit are refused as they arrive: a client sending a header of
hundreds of megabytes within the time headers have made the server hold it all (twice
over, as it was joined), and its parsing held up every other request meanwhile."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

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
