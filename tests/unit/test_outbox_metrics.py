"""The outbox gauges of a scrape when the database does not answer: the scrape is served
in time all the same, saying the database is down."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client import generate_latest

from herald.observability.metrics import Metrics


class UnansweredRead:
    """The outbox read of a database whose host is gone: it waits until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.released = threading.Event()

    def __call__(self) -> tuple[dict[str, int], int, float]:
        self.calls += 1
        self.released.wait(10)
        return {"pending": 2}, 2, 1.5


def scrape(metrics: Metrics) -> tuple[str, float]:
    started = time.monotonic()
    text = generate_latest(metrics.registry).decode()
    return text, time.monotonic() - started


def test_a_scrape_while_the_database_does_not_answer_serves_it_down_with_the_counters() -> None:
    """Held for the driver's time limits (10 s to connect, 30 s on an open connection),
    the scrape outlasted Prometheus' own 10 s and served nothing: neither the database
    down nor the delivery counters."""
    read = UnansweredRead()
    metrics = Metrics()
    metrics.watch_outbox(read)
    metrics.count_delivery("email", "sent")

    text, took = scrape(metrics)
    read.released.set()

    assert took < 5
    assert "herald_database_up 0.0" in text
    assert 'herald_deliveries_total{channel="email",status="sent"} 1.0' in text
    assert "herald_outbox_backlog" not in text


def test_scrapes_during_an_outage_wait_for_the_same_read_rather_than_pile_up() -> None:
    read = UnansweredRead()
    metrics = Metrics()
    metrics.watch_outbox(read, time_limit_s=0.2)

    texts = [scrape(metrics)[0] for _ in range(3)]

    assert all("herald_database_up 0.0" in text for text in texts)
    assert read.calls == 1
    read.released.set()


def test_once_the_database_answers_the_next_scrape_reads_the_outbox_again() -> None:
    read = UnansweredRead()
    metrics = Metrics()
    metrics.watch_outbox(read, time_limit_s=0.2)
    scrape(metrics)
    read.released.set()

    text, _ = scrape(metrics)

    assert "herald_database_up 1.0" in text
    assert "herald_outbox_backlog 2.0" in text


class DatabaseDown:
    """The outbox read of a database that refuses connections until told otherwise."""

    def __init__(self) -> None:
        self.down = True

    def __call__(self) -> tuple[dict[str, int], int, float]:
        if self.down:
            raise ConnectionRefusedError("connection refused")
        return {}, 0, 0.0


def test_an_outage_is_logged_once_by_the_metrics_not_at_every_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Prometheus scrapes each process every few seconds: a WARNING per scrape filled the
    log of an outage with the same line."""
    caplog.set_level(logging.INFO, "herald.observability")
    read = DatabaseDown()
    metrics = Metrics()
    metrics.watch_outbox(read)

    for _ in range(5):
        scrape(metrics)
    read.down = False
    scrape(metrics)
    scrape(metrics)
    read.down = True
    scrape(metrics)

    said = [r.getMessage() for r in caplog.records if r.name.startswith("herald")]
    assert said == [
        "metrics: cannot read the outbox: connection refused; herald_database_up is 0 until "
        "it is read again",
        "metrics: the outbox is read again",
        "metrics: cannot read the outbox: connection refused; herald_database_up is 0 until "
        "it is read again",
    ]
