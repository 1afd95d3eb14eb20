"""A dispatch round when the database's answer to a commit is lost: the commit went
through, and the dispatcher heard it fail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from sqlalchemy import Connection, event
from sqlalchemy.exc import OperationalError

from herald.delivery.dispatcher import Dispatcher
from herald.delivery.outcomes import Outcome
from herald.delivery.provider import DeliveryResult, DeliveryStatus, SendRequest
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.round_recording import RoundRecorder
from herald.domain.timeutil import to_micros
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock
from tests.support.delivery import funds_failure, store
from tests.support.http_receiver import CannedResponse, HttpReceiver

T = TypeVar("T")


class AnswerLostAfterCommit:
    """Makes the next commit on ``database`` go through, then fail as psycopg does when
    the connection drops before the server's answer to COMMIT arrives."""

    def __init__(self, database: Database) -> None:
        self.lost = 0
        self._engine = database.writer
        event.listen(self._engine, "commit", self._commit_then_lose_the_answer)

    def _commit_then_lose_the_answer(self, connection: Connection) -> None:
        event.remove(self._engine, "commit", self._commit_then_lose_the_answer)
        driver = connection.connection.dbapi_connection
        assert driver is not None
        driver.commit()
        self.lost += 1
        dropped = psycopg.OperationalError(
            "consuming input failed: server closed the connection unexpectedly"
        )
        raise OperationalError("COMMIT", None, dropped)


def test_a_round_whose_commit_answer_was_lost_is_counted_once_and_not_called_taken_over(
    database: Database, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The round was recorded, but the dispatcher did not hear so and tried again, finding
    its claims gone. It said of every message that another dispatcher had taken its claim
    over (none had) and counted none of the round's deliveries in its metrics."""
    caplog.set_level(logging.INFO, "herald.delivery")
    store(database, clock, [funds_failure(f"lost{i}") for i in range(3)])
    with UnitOfWork(database) as uow:
        claimed = uow.outbox.claim_due(
            now_us=to_micros(clock()), limit=10, worker="w1", lease_us=60_000_000
        )
        uow.commit()
    counted: list[tuple[str, str]] = []

    def count(channel: str, status: DeliveryStatus) -> None:
        counted.append((channel, status.value))

    async def in_a_thread(work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    answer = AnswerLostAfterCommit(database)
    recorder = RoundRecorder(
        database,
        worker_id="w1",
        clock=clock,
        storage=in_a_thread,
        wait_for_lock=True,
        on_result=count,
    )

    async def record() -> None:
        leases_end = asyncio.get_running_loop().time() + 60
        outcomes = [Outcome(row, DeliveryResult.sent()) for row in claimed]
        await recorder.record(outcomes, leases_end)

    clock.now += timedelta(seconds=1)
    asyncio.run(record())

    assert answer.lost == 1
    assert counted == [("email", "sent")] * 3
    assert "taken over" not in caplog.text
    with ReadOnly(database) as read:
        ids = [row.message_id for row in claimed]
        rows: list[Any] = [read.outbox.get(message_id) for message_id in ids]
        attempts = read.outbox.attempts_for(ids)
    assert {(row.status, row.attempts) for row in rows} == {("sent", 1)}
    assert all(len(attempts[message_id]) == 1 for message_id in ids)


class Recorded:
    """A provider that sends nothing, noting the messages it was given."""

    name = "recorded"
    local = False
    target = "a list"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sent.append(request.message_id)
        return DeliveryResult.sent()

    async def aclose(self) -> None:
        pass


def test_a_claim_whose_commit_answer_was_lost_is_sent_by_the_next_round(
    database: Database, clock: FixedClock
) -> None:
    """The claim went through, but the dispatcher heard it fail and sent nothing. Its
    messages stayed claimed until the lease ran out, a minute later, and that attempt was
    then counted as one that "may have gone out": the last allowed, it made the message a
    dead letter that never went out."""
    store(database, clock, [funds_failure("claimed")])
    provider = Recorded()
    worker = Dispatcher(database, {"email": provider}, worker_id="w1", clock=clock)
    answer = AnswerLostAfterCommit(database)

    with pytest.raises(OperationalError):
        asyncio.run(worker.run_once())
    clock.now += timedelta(seconds=1)
    report = asyncio.run(worker.run_once())

    assert answer.lost == 1
    assert report.sent == 1 and len(provider.sent) == 1
    with ReadOnly(database) as read:
        row = read.outbox.get(provider.sent[0])
        attempts = read.outbox.attempts_for([row.message_id])[row.message_id]
    assert (row.status, row.attempts) == ("sent", 1)
    assert [a.outcome for a in attempts] == ["sent"]


def test_a_claim_whose_answer_was_lost_gives_back_none_of_an_earlier_round_still_sending(
    database: Database, clock: FixedClock
) -> None:
    """Rounds overlap: the first is still sending (its receiver slow) when the second's
    claim goes through unheard, and the third gives the second's message back. Both
    claims were made at the same time of the clock (it stands still here; a coarse one
    does the same), and their leases ended together: the third gave back the first
    round's message too, claimed it again and sent it a second time while the first
    send was still under way."""
    store(database, clock, [funds_failure("slow")])

    async def scenario(receiver: HttpReceiver) -> None:
        worker = Dispatcher(
            database,
            {"email": WebhookProvider("email", receiver.url, secret=None)},
            worker_id="w1",
            clock=clock,
        )
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        try:
            while not receiver.requests:
                await asyncio.sleep(0.02)
            store(database, clock, [funds_failure("lost")])
            answer = AnswerLostAfterCommit(database)
            worker.wake()
            while len(receiver.requests) < 2 or not answer.lost:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)  # two claims' worth: a second send would have come
        finally:
            stopping.set()
            await running

    with HttpReceiver([CannedResponse(delay=2.0)]) as receiver:
        asyncio.run(asyncio.wait_for(scenario(receiver), timeout=10))
        users = sorted(request.json()["user_id"] for request in receiver.requests)

    assert users == ["lost", "slow"]
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql("SELECT status, attempts FROM messages").all()
    assert sorted(tuple(row) for row in rows) == [("sent", 1), ("sent", 1)]
