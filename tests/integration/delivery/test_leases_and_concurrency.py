"""Claims and their leases: several dispatchers never send one message twice, a send
ends before its lease does, and a claim that runs out goes to another dispatcher."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from herald import bootstrap
from herald.delivery.backoff import RetryPolicy
from herald.delivery.dispatcher import Dispatcher
from herald.delivery.outcomes import DispatchReport
from herald.delivery.provider import DeliveryResult, DeliveryStatus, Provider, SendRequest
from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.providers.stub import StubProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.domain.timeutil import to_micros
from herald.service.outbox_changes import cancel_rule_messages
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock
from tests.support.delivery import GatedProvider, dispatcher, funds_failure, message, store
from tests.support.events import opted_in_signup
from tests.support.http_receiver import CannedResponse, HttpReceiver
from tests.support.processes import connections_refused, scratch_postgres_database
from tests.support.smtp_sink import SmtpSink


def test_two_dispatchers_never_send_one_message_twice(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    store(database, clock, [funds_failure(f"d{i}") for i in range(60)])
    outbox = tmp_path / "outbox.jsonl"

    async def both() -> None:
        workers = [
            dispatcher(
                database, clock, {"email": StubProvider(outbox)}, worker_id=name, batch_size=7
            )
            for name in ("a", "b")
        ]
        for _ in range(10):
            await asyncio.gather(*(w.run_once() for w in workers))

    asyncio.run(both())
    ids = [
        line.split('"message_id":"')[1].split('"')[0] for line in outbox.read_text().splitlines()
    ]
    assert len(ids) == 60 and len(set(ids)) == 60
    with ReadOnly(database) as read:
        sent_by = dict(
            read.connection.exec_driver_sql(
                "SELECT worker, count(*) FROM delivery_attempts GROUP BY worker"
            ).all()
        )
    assert sent_by.keys() == {"a", "b"}, sent_by  # both took part: no one had it all alone


def test_two_dispatchers_of_one_host_name_and_pid_never_record_each_other_s_claims(
    database: Database,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two ``herald worker`` containers on the host's network (one host name), each Herald
    its PID 1. The first stalls mid-send past its claim's lease; the second takes the
    message over and sends it. The first's late 503 must not be recorded over the second's
    claim: recorded, it made the message a pending retry, dropped the second's ``sent``
    as no longer its own, and the message went out a third time."""
    caplog.set_level(logging.DEBUG, "herald.delivery")
    with monkeypatch.context() as same_host:
        same_host.setattr(bootstrap.socket, "gethostname", lambda: "node-1")
        same_host.setattr(bootstrap.os, "getpid", lambda: 1)
        names = [bootstrap.worker_id() for _ in range(2)]
    store(database, clock, [funds_failure("twin")])

    def webhook(url: str) -> dict[str, Provider]:
        return {"email": WebhookProvider("email", url, secret=None, timeout=10)}

    counted: dict[str, list[str]] = {name: [] for name in names}

    def counter(name: str) -> Callable[[str, DeliveryStatus], None]:
        return lambda _channel, status: counted[name].append(status.value)

    async def the_second_takes_over(receiver: HttpReceiver) -> None:
        first, second = (
            dispatcher(database, clock, webhook(receiver.url), worker_id=n, on_result=counter(n))
            for n in names
        )
        first_round = asyncio.create_task(first.run_once())
        async with asyncio.timeout(5):
            while not receiver.requests:  # its request is at the receiver
                await asyncio.sleep(0.01)
        clock.now += timedelta(minutes=2)  # and its process stalls past the lease
        second_round = asyncio.create_task(second.run_once())
        assert (await first_round).retried == 1  # its 503 comes first
        assert (await second_round).sent == 1

    slow_503, slower_200 = CannedResponse(503, delay=1.0), CannedResponse(200, delay=2.0)
    with HttpReceiver([slow_503, slower_200]) as receiver:
        asyncio.run(the_second_takes_over(receiver))
        clock.now += timedelta(minutes=10)  # past the backoff of a retry
        asyncio.run(dispatcher(database, clock, webhook(receiver.url)).run_once())
        assert len(receiver.requests) == 2

    assert names[0].startswith("node-1:1-") and names[0] != names[1]
    sent = message(database)
    # The first's cut-off attempt, counted by the second as it took the claim over, then its send.
    assert (sent.status, sent.attempts) == ("sent", 2)
    with ReadOnly(database) as read:
        attempts = read.outbox.attempts_for([sent.message_id])[sent.message_id]
    assert [(a.outcome, a.worker) for a in attempts] == [("retry", names[1]), ("sent", names[1])]
    assert attempts[0].detail.startswith("interrupted: its claim ran out")
    # The first's 503 was not the message's outcome: not counted, not logged as a retry;
    # the attempt it stands for is the second's, counted as it took the claim over.
    assert counted == {names[0]: [], names[1]: ["retry", "sent"]}
    assert "its claim was taken over before this attempt's outcome (retry)" in caplog.text
    assert "will be retried: HTTP 503" not in caplog.text


def test_a_slow_receiver_never_gets_a_message_again_from_a_second_dispatcher(
    database: Database, clock: FixedClock
) -> None:
    """Sends in turn, each answered after 1.2 s, under 2 s leases: the first dispatcher
    sends one, cuts the second off before its lease ends, gives the third back unsent,
    and records all that in time; the second dispatcher, looking once the leases have
    run out, finds only the third. (Without those bounds, both sent all three.)"""
    store(database, clock, [funds_failure(f"slow{i}") for i in range(3)])

    def wall_clock() -> datetime:
        return datetime.now(UTC)

    async def two_dispatchers(url: str) -> None:
        first, second = (
            Dispatcher(
                database,
                {"email": WebhookProvider("email", url, secret=None, timeout=10)},
                worker_id=name,
                clock=wall_clock,
                retry=RetryPolicy(max_attempts=3, base=60, jitter=0),
                lease_seconds=2.0,
                concurrency=1,
            )
            for name in ("first", "second")
        )
        first_round = asyncio.create_task(first.run_once())
        await asyncio.sleep(2.3)
        assert (await second.run_once()).sent == 1
        assert (await first_round).sent == 1

    with HttpReceiver(default=CannedResponse(200, delay=1.2)) as receiver:
        asyncio.run(two_dispatchers(receiver.url))
        keys = [request.headers["idempotency-key"] for request in receiver.requests]

    assert len(keys) == 3 and len(set(keys)) == 3
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT status, attempts FROM messages ORDER BY status, attempts"
        ).all()
    # The one cut off waits for its retry; no message is left claimed ("sending").
    assert [tuple(row) for row in rows] == [("pending", 1), ("sent", 1), ("sent", 1)]


@pytest.mark.postgres
def test_a_claim_slow_to_commit_still_ends_its_send_before_its_lease_does(
    postgres_url: str, clock: FixedClock
) -> None:
    """The first dispatcher's claim takes half of its 3 s lease to commit (another client
    holds the users table, as a migration would; a disk slow to flush does the same).
    Its send must still be cut off before the lease ends, leaving time to record it:
    timed from the end of the claim instead, it ran past the lease, the second dispatcher
    took the message over and sent it too, and the receiver got it twice."""
    with scratch_postgres_database(postgres_url) as url:
        database = Database(url)
        upgrade(database)
        store(database, clock, [opted_in_signup("slowclaim")])  # marketing: profiles are read

        async def two_dispatchers(receiver_url: str) -> DispatchReport:
            first, second = (
                Dispatcher(
                    database,
                    {"email": WebhookProvider("email", receiver_url, secret=None, timeout=10)},
                    worker_id=name,
                    clock=lambda: datetime.now(UTC),
                    retry=RetryPolicy(max_attempts=3, base=60, jitter=0),
                    lease_seconds=3.0,
                )
                for name in ("first", "second")
            )
            holder = psycopg.connect(url.replace("postgresql+psycopg:", "postgresql:", 1))
            holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            threading.Timer(1.5, holder.close).start()
            first_round = asyncio.create_task(first.run_once())
            await asyncio.sleep(3.4)  # the first's lease has run out
            await second.run_once()
            return await first_round

        with HttpReceiver(default=CannedResponse(200, delay=2.0)) as receiver:
            first = asyncio.run(two_dispatchers(receiver.url))
            keys = [request.headers["idempotency-key"] for request in receiver.requests]
        row = message(database)
        database.dispose()

    assert len(keys) == 1
    assert first.retried == 1 and (row.status, row.attempts) == ("pending", 1)


class OutageAfterSend:
    """Sends, then makes the database refuse connections for ``seconds`` (a restart of
    PostgreSQL while the round is under way), before the dispatcher records the send."""

    name = "outage"
    local = False

    def __init__(self, admin_url: str, url: str, seconds: float) -> None:
        self._outage = (admin_url, url, seconds)
        self.sent: list[str] = []
        self._threads: list[threading.Thread] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sent.append(request.message_id)
        if not self._threads:
            begun = threading.Event()
            admin_url, url, seconds = self._outage

            def outage() -> None:
                with connections_refused(admin_url, url):
                    begun.set()
                    threading.Event().wait(seconds)

            self._threads.append(threading.Thread(target=outage))
            self._threads[0].start()
            await asyncio.to_thread(begun.wait, 10)
        return DeliveryResult.sent()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


@pytest.mark.postgres
def test_a_round_sent_while_the_database_restarts_is_recorded_and_never_sent_again(
    postgres_url: str, clock: FixedClock
) -> None:
    """The database goes away for a second between a round's sends and their recording:
    the dispatcher records them once it is back, within the claims' 3 s leases, rather
    than leave them to be claimed and sent again when the leases run out."""
    with scratch_postgres_database(postgres_url) as url:
        database = Database(url)
        upgrade(database)
        store(database, clock, [funds_failure("restart")])
        provider = OutageAfterSend(postgres_url, url, seconds=1.0)
        worker = Dispatcher(
            database,
            {"email": provider},
            worker_id="w1",
            clock=lambda: datetime.now(UTC),
            lease_seconds=3.0,
        )

        async def six_seconds() -> None:
            stopping = asyncio.Event()
            asyncio.get_running_loop().call_later(6.0, stopping.set)
            await worker.run(stopping)

        asyncio.run(six_seconds())
        provider.join()
        row = message(database)
        database.dispose()

    assert len(provider.sent) == 1
    assert (row.status, row.attempts) == ("sent", 1)


def test_a_message_whose_send_kills_its_dispatcher_every_time_ends_a_dead_letter(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """A send that takes its process down (a crash in a native library, running out of
    memory) records nothing: each lease that ran out counts as an attempt, so the message
    ends a dead letter instead of being claimed, and killing a dispatcher, for ever."""
    store(database, clock, [funds_failure("poison")])

    async def dies_while_sending(name: str) -> None:
        provider = GatedProvider()  # never opened: the send is under way when it dies
        round_ = asyncio.create_task(
            dispatcher(database, clock, {"email": provider}, worker_id=name).run_once()
        )
        while not provider.started:
            await asyncio.sleep(0.01)
        round_.cancel()  # the process is gone: nothing after the send is recorded

    for name in ("w1", "w2", "w3"):  # the test policy allows three attempts
        asyncio.run(dies_while_sending(name))
        clock.now += timedelta(minutes=2)  # its lease runs out
    outbox = tmp_path / "outbox.jsonl"
    report = asyncio.run(
        dispatcher(database, clock, {"email": StubProvider(outbox)}, worker_id="w4").run_once()
    )

    assert (report.claimed, report.sent, report.failed) == (1, 0, 1)
    assert not outbox.exists()  # not sent a fourth time
    dead = message(database)
    assert (dead.status, dead.attempts) == ("failed", 3)
    assert dead.last_error.startswith("gave up after 3 attempts: interrupted: its claim ran out")
    with ReadOnly(database) as read:
        attempts = read.outbox.attempts_for([dead.message_id])[dead.message_id]
    assert [(a.attempt, a.outcome, a.worker) for a in attempts] == [
        (1, "retry", "w2"),
        (2, "retry", "w3"),
        (3, "failed", "w4"),
    ]


def test_an_expired_claim_is_delivered_by_another_dispatcher(
    database: Database, clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    """The attempt its lease cut off is counted and logged as a retry, as the audit lists
    it: after a dispatcher was killed, its messages were sent again without a word."""
    store(database, clock, [funds_failure("c1")])
    with UnitOfWork(database) as uow:  # a dispatcher claims it, then dies
        uow.outbox.claim_due(
            now_us=to_micros(clock()), limit=10, worker="dead", lease_us=60_000_000
        )
        uow.commit()
    outbox = tmp_path / "outbox.jsonl"
    counted: list[tuple[str, str]] = []
    alive = dispatcher(
        database,
        clock,
        {"email": StubProvider(outbox)},
        worker_id="alive",
        on_result=lambda channel, status: counted.append((channel, status.value)),
    )
    assert asyncio.run(alive.run_once()).claimed == 0  # the lease still holds
    clock.now += timedelta(minutes=2)
    caplog.set_level("DEBUG", logger="herald.delivery")
    report = asyncio.run(alive.run_once())
    assert report.sent == 1

    assert counted == [("email", "retry"), ("email", "sent")]
    row = message(database)
    assert f"message {row.message_id} will be retried: interrupted: its claim ran out" in (
        caplog.text
    )
    [said] = [r for r in caplog.records if "message(s) will be retried" in r.getMessage()]
    assert said.levelname == "INFO" and said.getMessage().startswith(
        "email: 1 message(s) will be retried: interrupted: its claim ran out"
    )
    assert said.getMessage().endswith("; next attempt now")


def test_an_expired_claim_whose_rule_was_cancelled_is_counted_and_said_as_it_ends(
    database: Database, clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    """Its cut-off attempt is in the audit, as any lease run out is; it went without a
    word from the dispatcher that ended it, and uncounted by the deliveries' metric, so
    the metric and the audit disagreed on the attempts made."""
    store(database, clock, [funds_failure("c2")])
    with UnitOfWork(database) as uow:  # a dispatcher claims it, then dies
        uow.outbox.claim_due(
            now_us=to_micros(clock()), limit=10, worker="dead", lease_us=60_000_000
        )
        uow.commit()
    done = cancel_rule_messages(
        database, "INSUFFICIENT_FUNDS_EMAIL", now=clock(), how="herald messages cancel"
    )
    assert done.in_flight == 1
    counted: list[tuple[str, str]] = []
    alive = dispatcher(
        database,
        clock,
        {"email": StubProvider(tmp_path / "outbox.jsonl")},
        worker_id="alive",
        on_result=lambda channel, status: counted.append((channel, status.value)),
    )
    clock.now += timedelta(minutes=2)
    caplog.set_level("INFO", logger="herald.delivery")

    assert asyncio.run(alive.run_once()).claimed == 0

    row = message(database)
    assert row.status == "cancelled"
    assert counted == [("email", "retry")]
    [said] = [r for r in caplog.records if row.message_id in r.getMessage()]
    assert said.getMessage().startswith(
        f"message {row.message_id} cancelled, not sent: cancelled by `herald messages cancel`"
    )
    assert "(its attempt: interrupted: its claim ran out" in said.getMessage()


def test_an_email_cut_off_at_its_claims_deadline_is_not_sent_after_it(
    database: Database, clock: FixedClock
) -> None:
    """The SMTP server answers RCPT TO after 1.5 s; the claim leaves 0.9 s for sending. The
    send is cut off before the message's content was sent, so nothing may go out after
    that: the retry must be the only copy the server accepts."""
    store(database, clock, [funds_failure("cut1")])
    with SmtpSink() as sink:
        sink.rcpt_delay = 1.5
        smtp = SmtpProvider("email", sink.host, sink.port, sender="herald@example.com")
        worker = dispatcher(database, clock, {"email": smtp}, lease_seconds=1.0)
        assert asyncio.run(worker.run_once()).retried == 1
        assert "no answer within its claim's lease" in message(database).last_error
        assert sink.messages == []  # cut off: the message must not have gone out after all

        sink.rcpt_delay = 0.0
        clock.now += timedelta(minutes=10)
        assert asyncio.run(worker.run_once()).sent == 1
        assert len(sink.messages) == 1
