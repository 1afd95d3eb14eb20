"""A message a round gives back for later (its channel's rate limit, a receiver's pause,
its user's quiet hours) is due when its gate said, however long the round's other sends
took (it may be recorded with them, once its slowest send has answered), and those a
pause held go out in the order they were made."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from herald.delivery.outcomes import DispatchReport
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.ratelimit import ChannelRateLimits
from herald.domain.timeutil import iso
from herald.store.database import Database
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, pending, store
from tests.support.http_receiver import CannedResponse, HttpReceiver

SLOW_S = 3


class SlowReceiver(HttpReceiver):
    """A receiver that takes ``SLOW_S`` seconds of the dispatcher's clock to answer each
    request."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__()
        self._clock = clock

    def _record(self, request: Any) -> CannedResponse:
        response = super()._record(request)
        with self._lock:
            self._clock.now += timedelta(seconds=SLOW_S)
        return response


def test_a_rate_limited_message_keeps_its_turn_through_a_slow_send(
    database: Database, clock: FixedClock
) -> None:
    """At one a second, the two messages the first send leaves behind are due one and two
    seconds after it began, as their deferral says, not that long after its slow answer:
    counted from the round's end, each came that much late, the slot promised it unused,
    and behind messages made after it."""
    store(database, clock, [funds_failure(f"t{i}") for i in range(3)])
    start = clock.now
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: clock.now.timestamp())
    with SlowReceiver(clock) as receiver:
        provider = WebhookProvider(
            "email", receiver.url, secret=None, clock=lambda: clock.now.timestamp()
        )
        worker = dispatcher(database, clock, {"email": provider}, rate_limits=limits)

        first = asyncio.run(worker.run_once())

        assert (first.sent, first.deferred) == (1, 2)
        assert clock.now == start + timedelta(seconds=SLOW_S)
        assert pending(database) == [
            (iso(start + timedelta(seconds=1)), "email rate limit: its turn is in 1.0 s"),
            (iso(start + timedelta(seconds=2)), "email rate limit: its turn is in 2.0 s"),
        ]
        # Both turns passed while the slow answer came: the next round takes them up.
        assert asyncio.run(worker.run_once()).claimed == 2


class RunningClock(FixedClock):
    """A clock that moves on by a millisecond each time it is read, as time does between
    one reading and the next of a round."""

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def test_a_receiver_s_pause_ends_with_its_backlog_sent_oldest_first(database: Database) -> None:
    """The receiver answers the first message 429 with ``Retry-After: 10``; three more,
    made during the pause, are held until it ends. Then the four go out in the order they
    were made: the one answered 429 went last, each due a few microseconds apart (by when
    the dispatcher happened to read its clock), and behind a rate limit, a whole backlog
    later."""
    clock = RunningClock()
    store(database, clock, [funds_failure("p0")])
    throttled = CannedResponse(429, b"slow down", {"Retry-After": "10"})
    with HttpReceiver([throttled]) as receiver:
        provider = WebhookProvider(
            "email", receiver.url, secret=None, clock=lambda: clock.now.timestamp()
        )
        worker = dispatcher(database, clock, {"email": provider}, concurrency=1)

        async def rounds() -> list[DispatchReport]:
            first = await worker.run_once()
            clock.now += timedelta(seconds=1)
            for i in range(1, 4):
                store(database, clock, [funds_failure(f"p{i}")])
            during = await worker.run_once()
            clock.now += timedelta(seconds=10)
            return [first, during, await worker.run_once()]

        first, during, after = asyncio.run(rounds())

    assert (first.retried, during.deferred, after.sent) == (1, 3, 4)
    sent = [request.json()["user_id"] for request in receiver.requests[1:]]
    assert sent == ["p0", "p1", "p2", "p3"]
