"""A channel sending at its rate limit while more arrives than the rate lets out: each
message deferred waits its own turn, and a message made later never takes it."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.providers.stub import StubProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.ratelimit import ChannelRateLimits
from herald.domain.timeutil import iso
from herald.store.database import Database
from tests.conftest import FixedClock
from tests.support.delivery import (
    database_clock_follows,
    dispatcher,
    funds_failure,
    pending,
    store,
)
from tests.support.http_receiver import CannedResponse, HttpReceiver

ROUND_S = 0.25  # a busy dispatcher's rounds, as it polls


def passed_by(made: list[str], sent: list[str]) -> dict[str, int]:
    """For each message made, how many made after it were sent before it: all those sent,
    while it is still waiting."""
    position = {user: n for n, user in enumerate(sent)}
    return {
        user: sum(
            position[later] < position.get(user, len(sent))
            for later in made[n + 1 :]
            if later in position
        )
        for n, user in enumerate(made)
    }


def test_messages_arriving_faster_than_the_rate_go_out_in_the_order_they_were_made(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """Two messages a second on a channel that sends one a second. Each message deferred
    was promised a turn but not kept it: a message made after it, due at once, was claimed
    first and took the turn's token, and the one deferred went to the back of the line
    again, behind every message made meanwhile, and again, for as long as the arrivals
    outran the rate."""
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: clock.now.timestamp())
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(database, clock, {"email": StubProvider(outbox)}, rate_limits=limits)
    made = []
    for step in range(160):  # 40 s
        if step % 2:  # a message every half second, between two rounds
            made.append(f"u{step:03d}")
            store(database, clock, [funds_failure(made[-1])])
        clock.now += timedelta(seconds=ROUND_S / 2)
        asyncio.run(worker.run_once())
        clock.now += timedelta(seconds=ROUND_S / 2)

    sent = [json.loads(line)["user_id"] for line in outbox.read_text().splitlines()]
    assert len(sent) in (40, 41)  # the rate, all along
    assert max(passed_by(made, sent).values()) == 0
    assert sent == made[: len(sent)]  # 40 s of the rate: the 40 made first


class TimedReceiver(HttpReceiver):
    """A receiver that notes, by the test's clock, when each user's request came."""

    def __init__(self, clock: FixedClock, responses: list[CannedResponse]) -> None:
        super().__init__(responses)
        self._clock = clock
        self.received: list[tuple[float, str]] = []  # (seconds from the start, user)
        self._start = clock.now

    def _record(self, request: Any) -> CannedResponse:
        response = super()._record(request)
        with self._lock:
            seconds = (self._clock.now - self._start).total_seconds()
            self.received.append((seconds, request.json()["user_id"]))
        return response


def test_a_receiver_s_pause_moves_a_rate_limited_backlog_back_in_its_order(
    database: Database, clock: FixedClock
) -> None:
    """At one a second, a backlog of ten each booked its turn; the second message sent is
    answered 429 with ``Retry-After: 5``. The turns move back five seconds: after the pause
    the backlog goes on in its order, one a second. The turns in the pause used to be
    taken up at its end by messages made after them, the first of them at once with the
    next one's turn, and the others sent after the whole backlog."""
    users = [f"b{n}" for n in range(10)]
    for user in users:  # made a millisecond apart, in this order
        store(database, clock, [funds_failure(user)])
        clock.now += timedelta(milliseconds=1)
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: clock.now.timestamp())
    throttled = CannedResponse(429, b"slow down", {"Retry-After": "5"})
    with TimedReceiver(clock, [CannedResponse(200), throttled]) as receiver:
        provider = WebhookProvider(
            "email", receiver.url, secret=None, clock=lambda: clock.now.timestamp()
        )
        worker = dispatcher(database, clock, {"email": provider}, rate_limits=limits)
        for _ in range(100):  # 25 s
            asyncio.run(worker.run_once())
            clock.now += timedelta(seconds=ROUND_S)

    # b1, due again 10 s after its 429 (its backoff), takes the turn after b9's: those
    # were due before it.
    assert [user for _, user in receiver.received] == [*users, "b1"]
    times = [seconds for seconds, _ in receiver.received]
    assert min(later - earlier for earlier, later in pairwise(times)) >= 1.0
    assert times == [0.0, 1.0, *range(7, 16)]  # b2's turn, at 2 s, came after the pause


def test_a_rate_limited_backlog_drains_when_the_database_s_clock_runs_behind(
    database: Database, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's clock, which says what is due, runs 1.5 s behind the dispatcher's:
    each message deferred was claimed 1.5 s after its turn. Each such turn was lost and
    booked again behind the others, which would be missed alike: of a backlog of twelve,
    one was sent, and the channel sent nothing more for as long as it lasted."""
    behind_us = 1_500_000
    database_clock_follows(monkeypatch, clock, -timedelta(microseconds=behind_us))
    users = [f"l{n:02d}" for n in range(12)]
    for user in users:
        store(database, clock, [funds_failure(user)])
        clock.now += timedelta(milliseconds=1)
    clock.now += timedelta(microseconds=behind_us)  # due by the database's clock too
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: clock.now.timestamp())
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(
        database,
        clock,
        {"email": StubProvider(outbox)},
        rate_limits=limits,
        database_time=True,
    )
    sent_at = []
    for step in range(160):  # 40 s
        asyncio.run(worker.run_once())
        sent_at += [step * ROUND_S] * (len(outbox.read_text().splitlines()) - len(sent_at))
        clock.now += timedelta(seconds=ROUND_S)

    sent = [json.loads(line)["user_id"] for line in outbox.read_text().splitlines()]
    assert sent == users  # in their order
    assert min(later - earlier for earlier, later in pairwise(sent_at)) >= 1.0  # at the rate


def test_a_rate_limited_backlog_is_deferred_once_when_the_database_s_clock_runs_ahead(
    database: Database, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's clock, which says what is due, runs 1.5 s ahead of the dispatcher's.
    Each turn was written as due by the dispatcher's clock, so the database gave every
    message back 1.5 s before its turn, and it was deferred again, round after round
    (``its turn is in 1.5 s``, then ``1.2 s``, down to ``0.2 s``; ``0.0 s`` with clocks a
    few milliseconds apart), each time a claim and a write for nothing. A message
    deferred for its turn is due at that turn by the database's clock: claimed then, it
    is sent."""
    ahead = timedelta(seconds=1.5)
    database_clock_follows(monkeypatch, clock, ahead)
    users = [f"a{n:02d}" for n in range(12)]
    for user in users:
        store(database, clock, [funds_failure(user)])
        clock.now += timedelta(milliseconds=1)
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: clock.now.timestamp())
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(
        database,
        clock,
        {"email": StubProvider(outbox)},
        rate_limits=limits,
        database_time=True,
    )
    first = asyncio.run(worker.run_once())
    database_now = clock.now + ahead
    assert (first.sent, first.deferred) == (1, 11)
    assert pending(database) == [  # each due at its turn by the database's clock
        (iso(database_now + timedelta(seconds=n)), f"email rate limit: its turn is in {n}.0 s")
        for n in range(1, 12)
    ]
    deferred, sent_at = first.deferred, [0.0]
    for step in range(1, 80):  # 20 s
        clock.now += timedelta(seconds=ROUND_S)
        report = asyncio.run(worker.run_once())
        deferred += report.deferred
        sent_at += [step * ROUND_S] * report.sent

    sent = [json.loads(line)["user_id"] for line in outbox.read_text().splitlines()]
    assert sent == users  # in their order
    assert sent_at == [float(n) for n in range(12)]  # each in its turn, at the rate
    assert deferred == 11  # once each, for its turn
