"""On SQLite, another process may hold the write lock: a `herald worker`, a prune, a
checkpoint. Code on the event loop waits for it without stopping the loop, so the
server keeps answering meanwhile, and does its write once the lock is free."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.dispatcher import Dispatcher
from herald.delivery.provider import DeliveryResult, SendRequest
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestStatus
from herald.service.writer import InlineGroupCommitWriter
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import UnitOfWork, WriteLockBusy, when_unlocked
from tests.support.events import opted_in_signup

RULES = load_ruleset()
HOLD_S = 0.4
NOW = datetime(2025, 11, 3, 12, tzinfo=UTC)


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    yield path


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection (as another process would) takes the write lock now and
    releases it after ``seconds``, from a thread of its own."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


async def ticks_while(work: Awaitable[Any]) -> tuple[Any, int]:
    """Run ``work``; count how often a 10 ms timer fired on the loop meanwhile."""
    task = asyncio.ensure_future(work)
    ticks = 0
    while not task.done():
        await asyncio.sleep(0.01)
        ticks += 1
    return task.result(), ticks


def test_a_unit_of_work_that_must_not_wait_says_so_at_once(sqlite_path: Path) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    holder = hold_write_lock(sqlite_path, HOLD_S)
    started = time.monotonic()
    with pytest.raises(WriteLockBusy), UnitOfWork(database, wait=False):
        pass
    assert time.monotonic() - started < HOLD_S / 2
    with UnitOfWork(database) as uow:  # a waiting one gets the lock once it is released
        uow.commit()
    assert time.monotonic() - started >= HOLD_S * 0.9
    holder.join()
    database.dispose()


def test_a_connection_back_in_the_pool_waits_for_the_lock_again(sqlite_path: Path) -> None:
    """Not waiting is for one unit of work: other code that takes the same pooled
    connection later (a migration, a prune) still waits for a lock another holds."""
    database = Database(f"sqlite:///{sqlite_path}")
    with UnitOfWork(database, wait=False) as uow:
        uow.commit()
    holder = hold_write_lock(sqlite_path, HOLD_S)
    started = time.monotonic()
    with database.writer.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE waited (id INTEGER)")
    assert time.monotonic() - started >= HOLD_S * 0.9
    holder.join()
    database.dispose()


def test_ingestion_waits_for_the_lock_without_stopping_the_event_loop(sqlite_path: Path) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    writer = InlineGroupCommitWriter(database, RULES, clock=lambda: NOW)

    async def scenario() -> tuple[Any, int]:
        writer.start()
        holder = hold_write_lock(sqlite_path, HOLD_S)
        try:
            return await ticks_while(writer.ingest([opted_in_signup("u1")]))
        finally:
            holder.join()
            writer.stop()

    [result], ticks = asyncio.run(scenario())
    database.dispose()
    assert result.status is IngestStatus.ACCEPTED
    # Blocked in SQLite's busy handler, the loop could not fire a single timer until the
    # lock was released; polling, it fires about every 10 ms.
    assert ticks >= HOLD_S / 0.01 / 3, f"the loop ran only {ticks} timers in {HOLD_S} s"


class RecordingProvider:
    name = "recording"
    local = True

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sent.append(request.message_id)
        return DeliveryResult.sent("recorded")

    async def aclose(self) -> None:
        pass


def test_an_inline_dispatcher_waits_for_the_lock_without_stopping_the_event_loop(
    sqlite_path: Path,
) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    writer = InlineGroupCommitWriter(database, RULES, clock=lambda: NOW)
    provider = RecordingProvider()
    dispatcher = Dispatcher(
        database, {"email": provider}, worker_id="w", clock=lambda: NOW, inline_storage=True
    )

    async def scenario() -> tuple[Any, int]:
        writer.start()
        await writer.ingest([opted_in_signup("u1")])
        holder = hold_write_lock(sqlite_path, HOLD_S)
        try:
            return await ticks_while(dispatcher.run_once())
        finally:
            holder.join()
            writer.stop()

    report, ticks = asyncio.run(scenario())
    database.dispose()
    assert report.sent == 1 and len(provider.sent) == 1
    assert ticks >= HOLD_S / 0.01 / 3, f"the loop ran only {ticks} timers in {HOLD_S} s"


def test_waiting_for_the_lock_gives_up_after_its_timeout(sqlite_path: Path) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    attempts: list[float] = []

    def work() -> None:
        attempts.append(time.monotonic())
        with UnitOfWork(database, wait=False):
            pass

    holder = hold_write_lock(sqlite_path, HOLD_S)
    with pytest.raises(WriteLockBusy):
        asyncio.run(when_unlocked(work, timeout_s=0.1))
    holder.join()
    database.dispose()
    assert len(attempts) > 3  # it tried again, sooner than SQLite's handler would
    assert attempts[-1] - attempts[0] < HOLD_S / 2
