"""A request whose body does not arrive in time is answered 408 and its connection closed,
and a body sent after its answer does not keep the connection either, so that a client
sending a body a byte at a time cannot hold the server's connections for ever; bodies
that arrive in time, slowly or not, are read as before. Herald's app, served as `herald
serve` serves it, with deadlines short enough for a test."""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.api.app import create_app
from herald.cli.http_protocol import RequestDeadlineProtocol
from herald.config import Settings
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.serving import served_on_a_thread, signup, sqlite_url


class _QuickDeadlines(RequestDeadlineProtocol):
    headers_seconds = 0.5
    body_seconds = 1.5  # 2 s for a whole request


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    url = sqlite_url(tmp_path)
    database = Database(url)
    upgrade(database)
    database.dispose()
    settings = Settings(
        database_url=url, outbox_file=str(tmp_path / "outbox.jsonl"), dispatcher=False
    )
    with served_on_a_thread(create_app(settings), _QuickDeadlines, log_config=None) as chosen:
        yield chosen


def _post(path: str, body: bytes) -> bytes:
    """A request's headers, declaring ``body``'s length."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()


def _answered(connection: socket.socket) -> bool:
    return bool(select.select([connection], [], [], 0)[0])


def _trickle(connection: socket.socket, body: bytes, *, every: float) -> float:
    """Send ``body`` a byte every ``every`` seconds until the server answers or closes the
    connection (at most 10 s); the seconds that took."""
    began = time.monotonic()
    for byte in body:
        if _answered(connection) or time.monotonic() - began > 10:
            break
        try:
            connection.sendall(bytes([byte]))
        except OSError:  # closed
            break
        time.sleep(every)
    return time.monotonic() - began


def _read_to_the_end(connection: socket.socket) -> bytes:
    connection.settimeout(10)
    read = b""
    while chunk := connection.recv(65536):
        read += chunk
    return read


def _one_answer(connection: socket.socket) -> bytes:
    """The next answer on ``connection``, whose body is JSON (read up to its length)."""
    connection.settimeout(10)
    read = b""
    while b"\r\n\r\n" not in read:
        read += connection.recv(65536)
    head, _, body = read.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_body_slower_than_its_deadline_is_answered_408_and_not_read(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = json.dumps(signup("u_slow", "slow@example.com")).encode()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(_post("/events", body))
        took = _trickle(connection, body, every=0.1)

        answer = _read_to_the_end(connection)  # and then closed

    assert took < 4
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"connection: close" in answer
    assert answer.endswith(
        b"Herald waits 0.5 s for a request's headers and 1.5 s more for its body"
    )
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /audit/u_slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert _one_answer(connection).startswith(b"HTTP/1.1 404")  # nothing was stored
    # One line, not a server error with a traceback.
    assert "the connection closed before the whole body of POST /events arrived" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_body_trickled_after_its_answer_does_not_keep_the_connection(port: int) -> None:
    """A GET route answers without reading a body; the server still reads it off the
    connection, and any client may send one."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"
        )
        assert _one_answer(connection).startswith(b"HTTP/1.1 200")

        took = _trickle(connection, b"x" * 1000, every=0.1)

        assert _read_to_the_end(connection) == b""  # closed, with no second answer
    assert took < 4


def test_slow_bodies_within_the_deadline_are_read_on_a_connection_kept_alive(
    port: int,
) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        for n in range(2):
            body = json.dumps(signup(f"u_{n}", f"u{n}@example.com")).encode()
            connection.sendall(_post("/events", body))
            for at in range(0, len(body), len(body) // 4 + 1):
                time.sleep(0.25)  # a second in all: slower than none, within the deadline
                connection.sendall(body[at : at + len(body) // 4 + 1])

            answer = _one_answer(connection)

            assert answer.startswith(b"HTTP/1.1 202"), answer
            # The two bodies together take longer than one request's deadline: each
            # request has its own.
