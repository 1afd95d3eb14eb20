"""An API process keeps at most its cap of connections open (``--max-connections``,
carried to the protocol as uvicorn's ``limit_concurrency``): one past it is answered
``503`` with ``Retry-After`` at once and closed, so that a flood of connections cannot
take every file descriptor of the process, while the connections under the cap are
served as before, and new ones again once some have closed."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from herald.cli.http_protocol import RequestDeadlineProtocol
from tests.support.serving import hello_app, served_on_a_thread

CAP = 4
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


class _FewRefusalsAtOnce(RequestDeadlineProtocol):
    refusals_at_once = 2


# uvloop's transports, which `herald serve` runs on, and asyncio's, where uvloop is not.
@pytest.fixture(params=["uvloop", "asyncio"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    with served_on_a_thread(
        hello_app,
        RequestDeadlineProtocol,
        log_level="warning",
        limit_concurrency=CAP,
        loop=request.param,
    ) as chosen:
        yield chosen


def _connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(5)
    return connection


def _everything_from(connection: socket.socket) -> bytes:
    """What the server sends until it closes the connection (at most 5 s)."""
    said = b""
    while chunk := connection.recv(4096):
        said += chunk
    return said


def _served(connection: socket.socket) -> bool:
    """Whether a request on ``connection`` is answered 200 ``hello``, read whole (its head
    and its body can come in reads of their own)."""
    connection.sendall(REQUEST)
    answer = b""
    while not answer.endswith(b"hello") and (chunk := connection.recv(4096)):
        answer += chunk
    return answer.startswith(b"HTTP/1.1 200")


def _served_again(port: int) -> bool:
    """Whether a new client is served within 5 s (the server notes closed connections
    on its own loop, a moment after the clients close them)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with _connect(port) as connection:
            try:
                if _served(connection):
                    return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def test_connections_past_the_cap_are_answered_503_with_retry_after_and_closed(
    port: int,
) -> None:
    with ExitStack() as held:
        under = [held.enter_context(_connect(port)) for _ in range(CAP)]
        assert all(_served(connection) for connection in under)  # all CAP are open

        for _ in range(3):
            with _connect(port) as extra:  # sends nothing: answered all the same
                began = time.monotonic()
                answer = _everything_from(extra)

                assert time.monotonic() - began < 2
                assert answer.startswith(b"HTTP/1.1 503 ")
                head = answer.split(b"\r\n\r\n")[0].lower()
                assert b"\r\nretry-after: 1\r\n" in head + b"\r\n"
                assert b"\r\nconnection: close\r\n" in head + b"\r\n"

        # The connections under the cap are served on as before, each of them.
        assert all(_served(connection) for connection in under)

    assert _served_again(port)


def test_a_client_that_sends_its_request_at_once_reads_the_503(port: int) -> None:
    # Closing with the request unread would reset the connection, which can lose the
    # answer before the client reads it: the refusal waits for the client to close.
    with ExitStack() as held:
        for _ in range(CAP):
            held.enter_context(_connect(port))
        for _ in range(5):
            with _connect(port) as extra:
                extra.sendall(REQUEST)
                time.sleep(0.1)

                assert _everything_from(extra).startswith(b"HTTP/1.1 503 ")


def test_a_flood_past_the_refusals_at_once_is_closed_unanswered_and_the_server_serves_on() -> None:
    with served_on_a_thread(
        hello_app, _FewRefusalsAtOnce, log_level="warning", limit_concurrency=CAP
    ) as chosen:
        with ExitStack() as held:
            under = [held.enter_context(_connect(chosen)) for _ in range(CAP)]
            assert all(_served(connection) for connection in under)
            # Refused clients that keep their end open hold a descriptor each until the
            # refusal gives up on them: past two at once, the next are not even answered.
            lingering = [held.enter_context(_connect(chosen)) for _ in range(2)]
            for connection in lingering:
                assert connection.recv(4096).startswith(b"HTTP/1.1 503 ")
            flooding = held.enter_context(_connect(chosen))
            try:
                said = _everything_from(flooding)
            except ConnectionResetError:
                said = b""
            assert said == b""

            assert all(_served(connection) for connection in under)
        assert _served_again(chosen)


def test_the_refusals_are_said_in_the_log_once_and_not_for_each_connection(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    # The operator learns why clients get 503 from the log, not from a line a refusal:
    # a flood would bury everything else.
    with caplog.at_level(logging.WARNING, logger="herald"), ExitStack() as held:
        for _ in range(CAP):
            held.enter_context(_connect(port))
        for _ in range(3):
            with _connect(port) as extra:
                assert _everything_from(extra).startswith(b"HTTP/1.1 503 ")

    said = [record.getMessage() for record in caplog.records if record.name.startswith("herald")]
    assert len(said) == 1, said
    assert f"{CAP} connections open, the most HERALD_MAX_CONNECTIONS allows" in said[0]
