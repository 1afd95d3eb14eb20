"""When a message may go out: a channel's rate limit, a receiver's Retry-After and 429,
and quiet hours in the user's zone, for first sends and retries alike."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.dispatcher import Dispatcher
from herald.delivery.outcomes import DispatchReport
from herald.delivery.providers.stub import StubProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.ratelimit import ChannelRateLimits
from herald.domain.model import Event
from herald.domain.timeutil import parse_timestamp
from herald.rules.loader import default_rules_path
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock
from tests.support.delivery import (
    RULES,
    close_after_test,
    database_clock_follows,
    dispatcher,
    funds_failure,
    link_after_signup,
    message,
    store,
)
from tests.support.http_receiver import CannedResponse, HttpReceiver


def test_a_rate_limited_channel_drains_its_backlog_at_its_rate(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    store(database, clock, [funds_failure(f"r{i}") for i in range(5)])
    seconds = [0.0]
    limits = ChannelRateLimits.from_rates({"email": (2.0, 2)}, lambda: seconds[0])
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(database, clock, {"email": StubProvider(outbox)}, rate_limits=limits)
    sent_per_second = []
    for _ in range(3):
        sent_per_second.append(asyncio.run(worker.run_once()).sent)
        seconds[0] += 1.0
        clock.now += timedelta(seconds=1)
    assert sent_per_second == [2, 2, 1]
    assert len(outbox.read_text().splitlines()) == 5


def test_each_message_a_rate_limit_defers_gets_a_turn_of_its_own(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    # Deferred all to the next free slot, a backlog came back at once: one was sent and
    # every other one rewritten again, each second, for as long as the backlog lasted.
    store(database, clock, [funds_failure(f"q{i}") for i in range(6)])
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: 0.0)
    worker = dispatcher(
        database, clock, {"email": StubProvider(tmp_path / "o.jsonl")}, rate_limits=limits
    )

    first = asyncio.run(worker.run_once())
    again = asyncio.run(worker.run_once())

    assert (first.sent, first.deferred) == (1, 5)
    assert again.claimed == 0  # none is due before its turn: the backlog is left alone
    with ReadOnly(database) as read:
        waiting = read.connection.exec_driver_sql(
            "SELECT due_us, created_us, hold_reason FROM messages WHERE status = 'pending' "
            "ORDER BY created_us, message_id"
        ).all()
    assert sorted(due - created for due, created, _ in waiting) == [
        n * 1_000_000 for n in range(1, 6)
    ]
    assert waiting[0].hold_reason.startswith("email rate limit: its turn is in ")


RATE_NOTE = (
    "rate limits are this process's own: email 2/s, sms 0.5/s; "
    "N processes delivering send up to N times that (set a channel's rate to its limit / N)"
)


def run_until_stopped(worker: Dispatcher) -> None:
    async def scenario() -> None:
        stopping = asyncio.Event()
        stopping.set()  # one look at the outbox, then stop
        await worker.run(stopping)

    asyncio.run(scenario())


def test_a_dispatcher_says_once_at_start_that_its_rate_limits_are_its_own(
    database: Database, clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    limits = ChannelRateLimits.from_rates({"email": (2.0, 2), "sms": (0.5, 1)}, lambda: 0.0)
    stub = StubProvider(tmp_path / "outbox.jsonl")
    worker = dispatcher(database, clock, {"email": stub, "sms": stub}, rate_limits=limits)
    caplog.set_level("INFO", logger="herald.delivery")

    run_until_stopped(worker)

    assert [r.getMessage() for r in caplog.records if "rate limits" in r.getMessage()] == [
        RATE_NOTE
    ]


def test_a_dispatcher_without_rate_limits_says_nothing_of_them(
    database: Database, clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    limits = ChannelRateLimits.from_rates({"email": None}, lambda: 0.0)
    worker = dispatcher(
        database, clock, {"email": StubProvider(tmp_path / "o.jsonl")}, rate_limits=limits
    )
    caplog.set_level("INFO", logger="herald.delivery")

    run_until_stopped(worker)

    assert not [r for r in caplog.records if "rate limits" in r.getMessage()]


def test_quiet_hours_hold_an_sms_until_the_morning_in_the_users_zone(
    database: Database, tmp_path: Path
) -> None:
    from herald.delivery.quiet_hours import hold_policy
    from herald.delivery.setup import build_delivery

    plan = build_delivery(
        {"delivery": {"quiet_hours": {"sms": {"start": "21:00", "end": "08:00"}}}},
        outbox=tmp_path / "o",
    )
    night = FixedClock(
        parse_timestamp("2025-11-03T23:30:00Z")
    )  # 23:30 in Lisbon (UTC+0 in November)
    events = link_after_signup("q1")
    events = [
        Event(
            e.event_id,
            e.user_id,
            e.event_type,
            e.timestamp,
            e.properties,
            {**e.user_traits, "timezone": "Europe/Lisbon"},
        )
        for e in events
    ]
    with UnitOfWork(database) as uow:
        ingest(uow, events, RULES, now=night(), hold=hold_policy(plan.quiet_hours))
        uow.commit()
    sms = message(database)
    assert sms.channel == "sms" and "held until 2025-11-04T08:00:00Z" in sms.hold_reason
    stub = StubProvider(tmp_path / "outbox.jsonl")
    worker = dispatcher(database, night, {"sms": stub, "email": stub})
    assert asyncio.run(worker.run_once()).claimed == 0
    night.now = parse_timestamp("2025-11-04T08:00:00Z")
    assert asyncio.run(worker.run_once()).sent == 1


def test_a_receiver_s_retry_after_is_waited_out(database: Database, clock: FixedClock) -> None:
    """Throttled with Retry-After (in seconds, then as an HTTP date): the next attempt
    comes no sooner than the receiver asked, though the backoff alone is 10 s."""
    store(database, clock, [funds_failure("ra1")])
    later = format_datetime(clock.now + timedelta(seconds=240), usegmt=True)
    with HttpReceiver() as receiver:
        receiver.respond_with(
            CannedResponse(429, b"", {"Retry-After": "120"}),
            CannedResponse(503, b"", {"Retry-After": later}),
            CannedResponse(200),
        )
        provider = WebhookProvider(
            "email", receiver.url, secret=None, clock=lambda: clock.now.timestamp()
        )
        worker = dispatcher(database, clock, {"email": provider})
        assert asyncio.run(worker.run_once()).retried == 1
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).claimed == 0  # asked for 120 s
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).retried == 1
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).claimed == 0  # asked for the date, 120 s on
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).sent == 1
        assert len(receiver.requests) == 3


class ThrottlingReceiver(HttpReceiver):
    """A receiver that answers 429 with ``Retry-After: 2`` to every request in the two
    seconds (of ``clock``) from its first one, and 200 afterwards."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__()
        self._clock = clock
        self._throttled_until: datetime | None = None
        self.statuses: list[tuple[str, int]] = []  # (idempotency key, status) as answered

    def _record(self, request: Any) -> CannedResponse:
        super()._record(request)
        with self._lock:
            now = self._clock()
            if self._throttled_until is None:
                self._throttled_until = now + timedelta(seconds=2)
            if now < self._throttled_until:
                response = CannedResponse(429, b"slow down", {"Retry-After": "2"})
            else:
                response = self.default
            self.statuses.append((request.headers["idempotency-key"], response.status))
            return response


def test_a_receiver_s_429_pauses_the_whole_channel_without_using_attempts(
    database: Database, clock: FixedClock
) -> None:
    """Every message sent while the receiver throttles would be refused as well, each
    using an attempt: the first 429's Retry-After holds the whole channel back."""
    store(database, clock, [funds_failure(f"tm{i}") for i in range(4)])
    with ThrottlingReceiver(clock) as receiver:
        provider = WebhookProvider(
            "email", receiver.url, secret=None, clock=lambda: clock.now.timestamp()
        )
        # One send at a time, as when a round holds more messages than its concurrency:
        # the first answer comes back before the next message's turn.
        worker = dispatcher(database, clock, {"email": provider}, concurrency=1)

        async def rounds() -> list[DispatchReport]:
            first = await worker.run_once()
            clock.now += timedelta(seconds=1)
            store(database, clock, [funds_failure("tm-later")])  # due during the pause
            during = await worker.run_once()
            clock.now += timedelta(seconds=1)
            after = await worker.run_once()
            clock.now += timedelta(minutes=10)  # the throttled one's own backoff
            return [first, during, after, await worker.run_once()]

        first, during, after, last = asyncio.run(rounds())

    assert (first.retried, first.deferred, first.sent) == (1, 3, 0)
    assert (during.deferred, during.sent) == (1, 0)
    assert (after.sent, last.sent) == (4, 1)
    assert [status for _, status in receiver.statuses].count(429) == 1
    delivered = [key for key, status in receiver.statuses if status == 200]
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == 5
    with ReadOnly(database) as read:
        ids = [r[0] for r in read.connection.exec_driver_sql("SELECT message_id FROM messages")]
        attempts = read.outbox.attempts_for(ids)
    [throttled] = [key for key, status in receiver.statuses if status == 429]
    assert [a.outcome for a in attempts[throttled]] == ["retry", "sent"]
    assert "HTTP 429" in attempts[throttled][0].detail
    for other in set(ids) - {throttled}:
        assert [(a.outcome, a.detail) for a in attempts[other]] == [("sent", "HTTP 200")]


def test_a_retry_due_in_quiet_hours_waits_for_the_morning(
    database: Database, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SMS first tried at 20:59:50 in Lisbon, answered 503: its retry falls due at
    21:00, inside the user's quiet hours (21:00-08:00), and must wait until 08:00 like a
    message created then (the same check, at send time, holds a dead letter re-queued at
    night, or a backlog that reaches past 21:00)."""
    from herald.bootstrap import build_runtime
    from herald.config import Settings
    from herald.delivery.quiet_hours import hold_policy

    evening = FixedClock(parse_timestamp("2025-11-03T20:59:50Z"))  # Lisbon is UTC+0 then
    database_clock_follows(monkeypatch, evening)  # on PostgreSQL, its clock finds what is due
    with HttpReceiver() as receiver:
        receiver.respond_with(CannedResponse(503))
        rules = tmp_path / "rules.yaml"
        packaged = default_rules_path().read_text(encoding="utf-8")
        rules.write_text(
            packaged
            + f"templates_dir: {default_rules_path().parent / 'templates'}\n"
            + "providers:\n"
            + f"  sms: {{type: webhook, url: '{receiver.url}'}}\n"
            + "delivery:\n"
            + "  backoff_seconds: 10\n"
            + "  quiet_hours: {sms: {start: '21:00', end: '08:00'}}\n",
            encoding="utf-8",
        )
        runtime = build_runtime(
            Settings(database_url=database_url, rules=str(rules), outbox_file="/dev/null"),
            clock=evening,
        )
        assert runtime.dispatcher is not None
        close_after_test(runtime.delivery.providers.values())
        events = [
            Event(e.event_id, e.user_id, e.event_type, e.timestamp, e.properties,
                  {**e.user_traits, "timezone": "Europe/Lisbon"})
            for e in link_after_signup("q2")
        ]  # fmt: skip
        with UnitOfWork(database) as uow:
            ingest(
                uow, events, RULES, now=evening(), hold=hold_policy(runtime.delivery.quiet_hours)
            )
            uow.commit()
        assert asyncio.run(runtime.dispatcher.run_once()).retried == 1  # at 20:59:50

        evening.now = parse_timestamp("2025-11-03T21:05:00Z")
        asyncio.run(runtime.dispatcher.run_once())
        assert len(receiver.requests) == 1  # nothing sent to the user at 21:05
        evening.now = parse_timestamp("2025-11-04T08:00:00Z")
        assert asyncio.run(runtime.dispatcher.run_once()).sent == 1
        runtime.database.dispose()
