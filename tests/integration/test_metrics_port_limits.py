"""The metrics port of a process that delivers (`HERALD_METRICS_PORT`) drops a client
that sends nothing once its time is up, and serves scrapes while such clients are
connected: prometheus_client's own server held a thread, and a file descriptor, for
each of them for ever."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from herald.observability.metrics_port import serve_metrics
from tests.support.ports import free_port

LIMIT_S = 0.5
AT_ONCE = 4


@pytest.fixture
def port() -> Iterator[int]:
    registry = CollectorRegistry()
    Counter("herald_test_scrapes", "a counter the scrape shows", registry=registry).inc(3)
    chosen = free_port()
    stop = serve_metrics(
        registry, "127.0.0.1", chosen, connection_seconds=LIMIT_S, connections_at_once=AT_ONCE
    )
    try:
        yield chosen
    finally:
        stop()


def _connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(5)
    return connection


def _closed_after(connection: socket.socket) -> float:
    """Seconds until the server closes ``connection`` (at most 5)."""
    began = time.monotonic()
    try:
        while connection.recv(1000):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - began


def _scraped(port: int) -> str:
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    answer.raise_for_status()
    return answer.text


@pytest.mark.parametrize(
    "sent", [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half a request"]
)
def test_a_silent_client_is_dropped_once_its_time_is_up(port: int, sent: bytes) -> None:
    with _connect(port) as connection:
        connection.sendall(sent)

        assert LIMIT_S * 0.8 < _closed_after(connection) < 3


def test_a_scrape_is_served_while_silent_clients_are_connected(port: int) -> None:
    with ExitStack() as held:
        for _ in range(AT_ONCE - 1):
            held.enter_context(_connect(port))
        time.sleep(0.1)  # each has its thread now

        assert "herald_test_scrapes_total 3.0" in _scraped(port)


def test_a_connection_past_those_at_once_is_closed_and_scrapes_resume_after(port: int) -> None:
    with ExitStack() as held:
        for _ in range(AT_ONCE):
            held.enter_context(_connect(port))
        time.sleep(0.1)
        with _connect(port) as extra:
            extra.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")

            assert _closed_after(extra) < LIMIT_S / 2  # unanswered, and not held

    time.sleep(LIMIT_S)  # the silent ones are dropped by then, if not already closed
    assert "herald_test_scrapes_total 3.0" in _scraped(port)


@pytest.mark.parametrize("path", ["/", "/healthz", "/favicon.ico", "/metricsx"])
def test_a_path_other_than_metrics_is_not_found(port: int, path: str) -> None:
    # The README names `/metrics`; the metrics answered on any path, so a probe of
    # `/healthz` at this port passed whatever the process's health.
    answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)

    assert answer.status_code == 404 and "herald_test_scrapes" not in answer.text
    assert "herald_test_scrapes_total 3.0" in _scraped(port)
