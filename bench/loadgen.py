"""Python load generator for ``POST /events/batch``: timed load and history preload.

Events have the same shape and distribution as ``post_event.lua`` produces, so the
history a preload builds looks like what the single-event runs add to it.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

COUNTRIES = ("PT", "ES", "FR", "DE", "GB", "US", "BR")
SEGMENTS = ("LOW", "MEDIUM", "HIGH")
REASONS = ("INSUFFICIENT_FUNDS", "CARD_DECLINED")
REQUEST_TIMEOUT_S = 120.0


class BatchSource(Protocol):
    """Anything that makes ``/events/batch`` request bodies (e.g. ``EventFactory``)."""

    def batch_body(self, size: int) -> bytes:
        """Return a request body holding ``size`` new events."""
        ...


class EventFactory:
    """Makes distinct ``payment_failed`` events: ids ``{token}-{n}``, n counting from 1.

    Users are ``u_0`` .. ``u_{users-1}``; timestamps fall in the ``spread_s`` seconds
    before ``now`` (Unix seconds). Not thread-safe; one factory per event loop.
    """

    def __init__(self, token: str, *, users: int, spread_s: int, now: float, seed: int) -> None:
        self._token = token
        self._users = users
        self._spread_s = spread_s
        self._now = int(now)
        self._rng = random.Random(seed)
        self._count = 0

    def event(self) -> dict[str, Any]:
        """Return the next event as a JSON-ready dict."""
        self._count += 1
        rng = self._rng
        user = rng.randrange(self._users)
        stamp = time.gmtime(self._now - rng.randint(0, self._spread_s))
        return {
            "event_id": f"{self._token}-{self._count}",
            "user_id": f"u_{user}",
            "event_type": "payment_failed",
            "event_timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp),
            "properties": {
                "amount": rng.randint(500, 200_000) / 100,
                "attempt_number": rng.randint(1, 4),
                "failure_reason": REASONS[self._count % 2],
            },
            "user_traits": {
                "email": f"u_{user}@example.com",
                "country": COUNTRIES[user % len(COUNTRIES)],
                "marketing_opt_in": user % 4 != 0,
                "risk_segment": SEGMENTS[user % 3],
            },
        }

    def batch_body(self, size: int) -> bytes:
        """Return a ``/events/batch`` request body holding ``size`` new events."""
        return orjson.dumps({"events": [self.event() for _ in range(size)]})


@dataclass
class BatchStats:
    """Outcome of a batch run. Durations in seconds, latencies in milliseconds."""

    batches: int = 0
    events: int = 0
    duration_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    failed_batches: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.duration_s if self.duration_s else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile ``q`` (0..100) of successful batch latencies; NaN if none."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        rank = max(1, round(q / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures, without the raw latencies."""
        return {
            "batches": self.batches,
            "events": self.events,
            "duration_s": round(self.duration_s, 3),
            "events_per_s": round(self.events_per_s, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "failed_batches": self.failed_batches,
            "error_samples": self.error_samples,
        }


async def _post_batch(
    client: httpx.AsyncClient, body: bytes, size: int, stats: BatchStats, close: bool = False
) -> None:
    started = time.perf_counter()
    headers = {"connection": "close"} if close else None
    try:
        response = await client.post("/events/batch", content=body, headers=headers)
    except httpx.HTTPError as exc:
        _record_failure(stats, f"{type(exc).__name__}: {exc}")
        return
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    if response.status_code != 200:
        _record_failure(stats, f"HTTP {response.status_code}: {response.text[:300]}")
        return
    stats.batches += 1
    stats.events += size
    stats.latencies_ms.append(elapsed_ms)


def _record_failure(stats: BatchStats, message: str) -> None:
    stats.failed_batches += 1
    if len(stats.error_samples) < 5:
        stats.error_samples.append(message)


def _client(base_url: str, clients: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=REQUEST_TIMEOUT_S,
        headers={"content-type": "application/json"},
        limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients),
        trust_env=False,
    )


async def batch_load(
    base_url: str,
    factory: EventFactory,
    *,
    duration_s: float,
    clients: int,
    batch_size: int,
    reconnect: bool = False,
) -> BatchStats:
    """Post batches of ``batch_size`` from ``clients`` concurrent loops for ``duration_s`` s.

    Every loop starts a new batch until the deadline passes; batches in flight then
    are awaited and counted, and the duration is measured to the last response.
    ``reconnect`` sends each batch on a new connection (``Connection: close``), so that
    several server processes sharing one socket each get their share of the batches.
    """
    # Bodies are made before the clock starts, for a rate above the 20,000 events/s
    # target: made during the load, at about 10 us an event, the generator took a share
    # of the very cores the server is measured on. Past them, it makes more as it goes.
    ahead = [factory.batch_body(batch_size) for _ in range(_bodies_for(duration_s, batch_size))]
    ahead.reverse()  # taken from the end, in the order they were made
    stats = BatchStats()
    started = time.perf_counter()
    deadline = started + duration_s

    async def loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            body = ahead.pop() if ahead else factory.batch_body(batch_size)
            await _post_batch(client, body, batch_size, stats, close=reconnect)

    async with _client(base_url, clients) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))
    stats.duration_s = time.perf_counter() - started
    return stats


# The rate the bodies made ahead of a timed load suffice for.
AHEAD_EVENTS_PER_S = 30_000


def _bodies_for(duration_s: float, batch_size: int) -> int:
    return max(1, round(duration_s * AHEAD_EVENTS_PER_S / batch_size))


async def preload(
    base_url: str,
    factory: BatchSource,
    *,
    count: int,
    clients: int,
    batch_size: int,
    progress_every: int = 100_000,
) -> BatchStats:
    """Store ``count`` more events through ``/events/batch``; progress goes to stderr.

    Stops at the first failed batch, so ``stats.events`` is what was really stored.
    """
    stats = BatchStats()
    started = time.perf_counter()
    remaining = count
    next_report = progress_every

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal remaining, next_report
        while remaining > 0 and not stats.failed_batches:
            size = min(batch_size, remaining)
            remaining -= size
            await _post_batch(client, factory.batch_body(size), size, stats)
            if stats.events >= next_report:
                rate = stats.events / (time.perf_counter() - started)
                print(
                    f"  preload {stats.events:,}/{count:,} ({rate:,.0f} events/s)", file=sys.stderr
                )
                next_report += progress_every

    async with _client(base_url, clients) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))
    stats.duration_s = time.perf_counter() - started
    return stats
