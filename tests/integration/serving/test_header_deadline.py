"""A connection whose request headers do not arrive in time is closed, so that clients
sending nothing, or a header now and then, cannot hold the server's connections for ever;
requests whose headers arrive in time are answered as before."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterator

import pytest

from herald.cli.http_protocol import RequestDeadlineProtocol
from tests.support.serving import hello_app, served_on_a_thread


class _QuickDeadline(RequestDeadlineProtocol):
    headers_seconds = 0.5


@pytest.fixture
def port() -> Iterator[int]:
    with served_on_a_thread(hello_app, _QuickDeadline, log_level="warning") as chosen:
        yield chosen


def _closed_after(connection: socket.socket) -> float:
    """Seconds until the server closes ``connection`` (at most 10)."""
    began = time.monotonic()
    connection.settimeout(10)
    while connection.recv(1000):
        pass
    return time.monotonic() - began


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /events HTTP/1.1\r\nHost: localhost\r\n"],
    ids=["nothing", "a request line and a header"],
)
def test_a_connection_without_whole_headers_in_time_is_closed(port: int, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(sent)

        assert _closed_after(connection) < 5


def test_a_connection_whose_headers_are_late_is_closed_unanswered(port: int) -> None:
    """As the README says: the 408 answers a late body, once there is a request."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        connection.settimeout(10)

        assert connection.recv(1000) == b""


def test_a_header_now_and_then_does_not_keep_the_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\n")
        began = time.monotonic()
        with pytest.raises(OSError):  # refused or reset once closed
            for n in range(40):
                time.sleep(0.1)
                connection.sendall(b"X-%d: 1\r\n" % n)
                connection.settimeout(0.01)
                try:
                    if connection.recv(1000) == b"":
                        raise ConnectionResetError
                except TimeoutError:
                    pass

        assert time.monotonic() - began < 2


def test_requests_with_headers_in_time_are_answered_on_a_connection_kept_alive(
    port: int,
) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(5)
        for _ in range(2):
            connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            time.sleep(0.3)  # slower than none, within the deadline
            connection.sendall(b"\r\n")
            answer = connection.recv(1000)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")
            time.sleep(0.4)  # the two waits together pass the deadline: each request has its own


def test_a_request_whose_headers_stall_on_a_connection_kept_alive_is_closed_in_time(
    port: int,
) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(5)
        connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert connection.recv(1000).startswith(b"HTTP/1.1 200")
        time.sleep(0.3)  # idle between requests: the next one's time starts with its first byte
        connection.sendall(b"GET / HTTP/1.1\r\n")

        # Its own 0.5 s, not what was left of the connection's: closed no sooner.
        assert 0.4 < _closed_after(connection) < 2


def test_a_connection_upgraded_to_a_websocket_leaves_no_timer_behind(port: int) -> None:
    """The WebSocket protocol takes the connection over, and this one is never told when
    it closes: its timer looked again every `headers_seconds` for ever, keeping it alive,
    one more for every upgrade any client asked for."""
    upgrade = (
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(upgrade)
            assert connection.recv(1000).startswith(b"HTTP/1.1 ")  # refused: no such route
    time.sleep(3 * _QuickDeadline.headers_seconds)
    gc.collect()

    assert not [found for found in gc.get_objects() if isinstance(found, _QuickDeadline)]
