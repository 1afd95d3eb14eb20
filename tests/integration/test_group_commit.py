"""Group commit: concurrent requests share transactions, and one bad request does not
fail the others written with it. Runs on both backends (the thread writer serves
PostgreSQL, the loop writer SQLite; both are tested on both)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from herald.domain.model import Event
from herald.domain.timeutil import parse_timestamp
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestResult, IngestStatus
from herald.service.writer import IngestFailed, LoopWriter, ThreadWriter
from herald.store.database import Database
from herald.store.tables import events
from tests.support.events import opted_in_signup

RULES = load_ruleset()


def writer_of(kind: type[ThreadWriter | LoopWriter], database: Database) -> tuple[Any, list[int]]:
    """A writer of ``kind``, and the sizes of the transactions it commits, as its
    ``on_commit`` hook (the one the metrics use) reports them."""
    commits: list[int] = []
    writer = kind(
        database,
        RULES,
        clock=lambda: datetime(2025, 11, 3, 12, tzinfo=UTC),
        on_commit=lambda results: commits.append(len(results)),
    )
    return writer, commits


POISON_SQL = {
    "sqlite": [
        "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.user_id = 'u7' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
        "IF NEW.user_id = 'u7' THEN RAISE EXCEPTION 'poisoned by the test'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison()",
    ],
}
CURE_SQL = {
    "sqlite": ["DROP TRIGGER poison"],
    "postgresql": ["DROP TRIGGER poison ON events", "DROP FUNCTION poison()"],
}


@pytest.fixture
def poisoned(database: Database) -> Iterator[Database]:
    """The database refuses, as a real error would, any transaction storing user u7's
    event (the test database is shared: the trigger is removed afterwards)."""
    backend = database.writer.dialect.name
    with database.writer.begin() as connection:
        for sql in POISON_SQL[backend]:
            connection.exec_driver_sql(sql)
    try:
        yield database
    finally:
        with database.writer.begin() as connection:
            for sql in CURE_SQL[backend]:
                connection.exec_driver_sql(sql)


def stored(database: Database) -> int:
    with database.reader.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


@pytest.mark.parametrize("kind", [ThreadWriter, LoopWriter])
def test_concurrent_requests_share_transactions(database: Database, kind: type) -> None:
    writer, commits = writer_of(kind, database)

    async def fire() -> list[list[IngestResult]]:
        writer.start()
        try:
            return await asyncio.gather(
                *(writer.ingest([opted_in_signup(f"u{i}")]) for i in range(40))
            )
        finally:
            writer.stop()

    results = asyncio.run(fire())
    assert all(r[0].status is IngestStatus.ACCEPTED for r in results)
    assert stored(database) == 40
    assert sum(commits) == 40 and len(commits) < 40


@pytest.mark.parametrize("kind", [ThreadWriter, LoopWriter])
def test_a_request_cancelled_while_it_is_written_leaves_the_writer_working(
    database: Database, kind: type
) -> None:
    # Its client gone (or the server stopping), a request is cancelled; answering it once
    # its events committed raised in the writer thread and ended it: later requests hung.
    writer, commits = writer_of(kind, database)

    async def scenario() -> list[IngestResult]:
        writer.start()
        try:
            gone = asyncio.ensure_future(writer.ingest([opted_in_signup("u_gone")]))
            await asyncio.sleep(0)  # queued, then cancelled before its answer
            gone.cancel()
            async with asyncio.timeout(5):
                while not commits:  # committed, and its cancelled request answered
                    await asyncio.sleep(0.01)
            return await asyncio.wait_for(writer.ingest([opted_in_signup("u_next")]), 5)
        finally:
            writer.stop()

    [result] = asyncio.run(scenario())
    assert result.status is IngestStatus.ACCEPTED


@pytest.mark.parametrize("kind", [ThreadWriter, LoopWriter])
def test_one_failing_request_does_not_fail_its_neighbours(poisoned: Database, kind: type) -> None:
    writer, commits = writer_of(kind, poisoned)

    async def fire() -> list[object]:
        writer.start()
        try:
            calls = (writer.ingest([opted_in_signup(f"u{i}")]) for i in range(20))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            writer.stop()

    outcomes = asyncio.run(fire())
    failed = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
    assert failed == [7]
    assert isinstance(outcomes[7], IngestFailed)
    assert stored(poisoned) == 19
    assert sum(commits) == 19


def test_two_writer_threads_racing_on_one_user_create_one_welcome_email(
    database: Database,
) -> None:
    """With two transactions in flight at once, the database (its locks and unique dedup
    keys), not the writer, keeps one user's decisions in order: one welcome email, every
    later signup suppressed by it, and no request failed."""
    writer = ThreadWriter(
        database, RULES, clock=lambda: datetime(2025, 11, 3, 12, tzinfo=UTC), threads=2
    )
    same_user = [
        Event(
            f"s-{n}",
            "u1",
            "signup_completed",
            parse_timestamp(f"2025-11-03T10:00:{n:02}Z"),
            {},
            {"email": "u1@example.com", "marketing_opt_in": True},
        )
        for n in range(30)
    ]

    async def fire() -> list[list[IngestResult]]:
        writer.start()
        try:
            return await asyncio.gather(*(writer.ingest([event]) for event in same_user))
        finally:
            writer.stop()

    results = [r[0] for r in asyncio.run(fire())]
    outcomes = [d.outcome.value for r in results for d in r.decisions]
    assert all(r.status is IngestStatus.ACCEPTED for r in results)
    assert outcomes.count("triggered") == 1
    assert outcomes.count("suppressed") == 29
    with database.reader.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM messages").scalar_one() == 1
