"""Prometheus metrics, on a registry of the app's own (nothing global at import time)."""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from herald.observability.logging import first_line
from herald.observability.shared_metrics import shared_metrics_folder

log = logging.getLogger(__name__)

OutboxSnapshot = tuple[dict[str, int], int, float]

# How long a scrape waits for the outbox's figures. A database host gone (the network
# cut) holds a read for the driver's time limits, 10 s to connect and 30 s for a
# connection already open: the scrape, given up by Prometheus after its own 10 s,
# served nothing then, neither herald_database_up at 0 nor the counters.
OUTBOX_READ_LIMIT_S = 3.0


class Metrics:
    """The metrics of one process. Those of what the process does not do (ingestion in a
    `herald worker`, delivery in an API whose dispatcher runs elsewhere) are counted on
    but not served: a scrape showing them at zero would say that nothing was received,
    or sent, where they are counted in another process. Among the API processes of one
    server, the counts served are those of all of them (see ``shared_metrics``)."""

    def __init__(self, *, ingests: bool = True, delivers: bool = True) -> None:
        # Each counter and histogram would also be served as a `*_created` series, the
        # Unix time it was made: twice the series for a time no dashboard reads.
        # Process-wide in prometheus_client, and the same for every Metrics.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        # Shared, the counts are served from the files of every process, this one's
        # among them, not from the counters themselves.
        shared = shared_metrics_folder()
        counted_here = None if shared else self.registry
        if shared:
            MultiProcessCollector(self.registry, path=shared)
        ingestion = counted_here if ingests else None
        delivery = counted_here if delivers else None
        self.events = Counter(
            "herald_events_total",
            "Events received, by type and status",
            ["event_type", "status"],
            registry=ingestion,
        )
        self.decisions = Counter(
            "herald_decisions_total",
            "Rule decisions, by rule and outcome",
            ["rule", "outcome"],
            registry=ingestion,
        )
        self.deliveries = Counter(
            "herald_deliveries_total",
            "Delivery attempts, by channel and status (sent, retry, failed)",
            ["channel", "status"],
            registry=delivery,
        )
        self.delivery_latency = Histogram(
            "herald_delivery_seconds",
            "Time each delivery attempt took, from the provider's request to its answer "
            "(or the cut-off), by channel",
            ["channel"],
            registry=delivery,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.ingest_latency = Histogram(
            "herald_ingest_seconds",
            "Time from request to committed answer, per request",
            ["endpoint"],
            registry=ingestion,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.connections_refused = Counter(
            "herald_connections_refused",
            "Connections refused, answered 503 or closed at once, as the API process "
            "had as many open as HERALD_MAX_CONNECTIONS allows",
            registry=ingestion,
        )
        self.commit_events = Histogram(
            "herald_commit_events",
            "Events per ingestion transaction: how well concurrent requests share commits",
            registry=ingestion,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
        )
        # Looking up a labelled series costs more than counting on it; label values are
        # few (event types, rules, statuses), so each series is looked up once, and kept
        # in its metric's table. Made on first use: a series made is served, at zero.
        self._tables: dict[int, dict[tuple[str, ...], Any]] = {}
        # The tables of the two metrics every request counts on, at hand: finding them by
        # the metric's id cost, with the call, about 2,500 instructions of a POST /events.
        self._events_series = self._table_of(self.events)
        self._ingest_series = self._table_of(self.ingest_latency)

    def _table_of(self, metric: Any) -> dict[tuple[str, ...], Any]:
        return self._tables.setdefault(id(metric), {})

    def _series_of(self, metric: Any, labels: tuple[str, ...]) -> Any:
        return _series_in(self._table_of(metric), metric, labels)

    def count_event(self, event_type: str, status: str) -> None:
        _series_in(self._events_series, self.events, (event_type, status)).inc()

    def observe_commit(self, events: int) -> None:
        self.commit_events.observe(events)

    def count_many(self, metric: Any, labels: Iterable[tuple[str, ...]]) -> None:
        """Count on ``metric`` once per item of ``labels``: a commit's events or decisions.
        One increment per series, each of which takes a lock, not one per item."""
        for series_labels, count in Tally(labels).items():
            self._series_of(metric, series_labels).inc(count)

    def count_delivery(self, channel: str, status: str) -> None:
        self._series_of(self.deliveries, (channel, status)).inc()

    def observe_delivery(self, channel: str, seconds: float) -> None:
        self._series_of(self.delivery_latency, (channel,)).observe(seconds)

    def observe_ingest(self, endpoint: str, seconds: float) -> None:
        _series_in(self._ingest_series, self.ingest_latency, (endpoint,)).observe(seconds)

    def watch_outbox(
        self, read: Callable[[], OutboxSnapshot], *, time_limit_s: float = OUTBOX_READ_LIMIT_S
    ) -> None:
        """Report the outbox on each scrape: ``read()`` gives (count by status, backlog,
        age in seconds of the oldest due message); one that takes longer than
        ``time_limit_s`` is reported as the database down."""
        self.registry.register(_OutboxCollector(read, time_limit_s))


def _series_in(table: dict[tuple[str, ...], Any], metric: Any, labels: tuple[str, ...]) -> Any:
    """``metric``'s series of ``labels``, kept in ``table``, its metric's."""
    series = table.get(labels)
    if series is None:
        series = table[labels] = metric.labels(*labels)
    return series


class _OutboxCollector(Collector):
    def __init__(
        self, read: Callable[[], OutboxSnapshot], time_limit_s: float = OUTBOX_READ_LIMIT_S
    ) -> None:
        self._read = read
        self._time_limit_s = time_limit_s
        self._lock = threading.Lock()
        self._reading: _Read | None = None
        self._failing = False  # the last scrape could not read the outbox

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not query the database

    def _read_in_time(self) -> OutboxSnapshot:
        """The outbox's figures, read on a thread of their own and waited for up to the
        time limit. A read still waiting from an earlier scrape is waited for again, not
        joined by another: scrapes during an outage must not pile up threads."""
        with self._lock:
            reading = self._reading
            if reading is None or reading.done.is_set():
                reading = self._reading = _Read(self._read)
        if not reading.done.wait(self._time_limit_s):
            raise TimeoutError(f"the database did not answer within {self._time_limit_s:g} s")
        if reading.error is not None:
            raise reading.error
        assert reading.result is not None
        return reading.result

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = "herald_database_up"
        says = "1 when the database answered this scrape (0 too when its SQLite file is gone)"
        try:
            by_status, backlog, age = self._read_in_time()
        except Exception as exc:
            # Every other metric is still served: a scrape during an outage is when they
            # matter most, and this one says why the outbox gauges are missing. Said once
            # an outage: Prometheus scrapes every process every few seconds.
            if not self._failing:
                log.warning(
                    "metrics: cannot read the outbox: %s; herald_database_up is 0 until it "
                    "is read again",
                    first_line(exc),
                )
            self._failing = True
            yield GaugeMetricFamily(up, says, value=0)
            return
        if self._failing:
            log.info("metrics: the outbox is read again")
        self._failing = False
        yield GaugeMetricFamily(up, says, value=1)
        messages = GaugeMetricFamily(
            "herald_messages",
            "Messages not yet delivered (pending, sending, failed), by status",
            labels=["status"],
        )
        for status, count in sorted(by_status.items()):
            messages.add_metric([status], count)
        yield messages
        yield GaugeMetricFamily(
            "herald_outbox_backlog", "Messages pending or being sent", value=backlog
        )
        yield GaugeMetricFamily(
            "herald_outbox_oldest_due_seconds", "Age of the oldest due message", value=age
        )


class _Read:
    """One read of the outbox on a daemon thread: one stuck on a database that does not
    answer must not hold the process's exit."""

    def __init__(self, read: Callable[[], OutboxSnapshot]) -> None:
        self.done = threading.Event()
        self.result: OutboxSnapshot | None = None
        self.error: Exception | None = None
        threading.Thread(target=self._run, args=(read,), daemon=True).start()

    def _run(self, read: Callable[[], OutboxSnapshot]) -> None:
        try:
            self.result = read()
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()
