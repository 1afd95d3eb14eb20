"""Group commit: concurrent requests share transactions, and one bad request does not
fail the others written with it. Runs on both backends (the thread writer serves
PostgreSQL, the loop writer SQLite; both are tested on both)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from herald.domain.model import Event
from herald.domain.timeutil import parse_timestamp
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestResult, IngestStatus
from herald.service.writer import GroupCommitWriter, IngestFailed, InlineGroupCommitWriter
from herald.store.database import Database
from herald.store.tables import events
from tests.support.events import opted_in_signup

RULES = load_ruleset()


class CountingWriter:
    """Wraps a writer class so the test sees how many transactions it committed, and can
    make the transactions that contain one chosen user fail."""

    @staticmethod
    def build(kind: type[GroupCommitWriter], database: Database, poison: str | None = None) -> Any:
        class Counting(kind):  # type: ignore[valid-type, misc]
            commits: list[int] = []

            def _commit(self, batch: list[Event], wait: bool) -> list[IngestResult]:
                if poison and any(e.user_id == poison for e in batch):
                    raise RuntimeError("this user's data breaks the transaction")
                results = super()._commit(batch, wait)
                self.commits.append(len(batch))
                return results

        return Counting(database, RULES, clock=lambda: datetime(2025, 11, 3, 12, tzinfo=UTC))


def stored(database: Database) -> int:
    with database.reader.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


@pytest.mark.parametrize("kind", [GroupCommitWriter, InlineGroupCommitWriter])
def test_concurrent_requests_share_transactions(database: Database, kind: type) -> None:
    writer = CountingWriter.build(kind, database)

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
    assert sum(writer.commits) == 40 and len(writer.commits) < 40


@pytest.mark.parametrize("kind", [GroupCommitWriter, InlineGroupCommitWriter])
def test_one_failing_request_does_not_fail_its_neighbours(database: Database, kind: type) -> None:
    writer = CountingWriter.build(kind, database, poison="u7")

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
    assert stored(database) == 19


def test_two_writer_threads_racing_on_one_user_create_one_welcome_email(
    database: Database,
) -> None:
    """With two transactions in flight at once, the database (its locks and unique dedup
    keys), not the writer, keeps one user's decisions in order: one welcome email, every
    later signup suppressed by it, and no request failed."""
    writer = GroupCommitWriter(
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
