"""Leases timed by the database server's clock: dispatchers on hosts whose clocks disagree
never take over each other's messages mid-send."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from herald.bootstrap import build_runtime
from herald.config import Settings
from herald.delivery.dispatcher import Dispatcher
from herald.delivery.outcomes import DispatchReport
from herald.delivery.providers.stub import StubProvider
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.conftest import FixedClock
from tests.support.delivery import (
    GatedProvider,
    close_after_test,
    dispatcher,
    funds_failure,
    message,
    store,
)
from tests.support.processes import scratch_postgres_database

AHEAD = timedelta(minutes=10)  # far more than a lease (60 s)


async def _second_while_first_sends(
    first: Dispatcher, gated: GatedProvider, second: Dispatcher
) -> tuple[DispatchReport, DispatchReport]:
    """``second``'s round while ``first`` is sending the message it claimed; then
    ``first``'s report, once its send is let through."""
    sending = asyncio.create_task(first.run_once())
    async with asyncio.timeout(5):
        while not gated.started:
            await asyncio.sleep(0.01)
    taken = await second.run_once()
    gated.gate.set()
    return taken, await sending


def test_a_dispatcher_whose_clock_runs_ahead_leaves_a_message_being_sent_alone(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """By its own clock, ten minutes ahead, the second dispatcher saw the first's 60 s
    lease long run out, claimed the message and sent it a second time."""
    store(database, clock, [funds_failure("skew")])
    now = datetime.now(UTC)
    gated = GatedProvider()
    first = dispatcher(
        database, FixedClock(now), {"email": gated}, worker_id="first", database_time=True
    )
    second = dispatcher(
        database,
        FixedClock(now + AHEAD),
        {"email": StubProvider(tmp_path / "outbox.jsonl")},
        worker_id="second",
        database_time=True,
    )

    taken, sent = asyncio.run(_second_while_first_sends(first, gated, second))

    assert taken.claimed == 0
    assert sent.sent == 1 and gated.started == [message(database).message_id]
    assert (message(database).status, message(database).attempts) == ("sent", 1)


@pytest.mark.postgres
def test_workers_on_postgresql_time_their_leases_by_the_server_s_clock(
    postgres_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    """A worker as `herald worker` and `herald serve` build it, on a host whose clock is
    ten minutes ahead, while another worker sends a message: it claims nothing."""
    with scratch_postgres_database(postgres_url) as url:
        database = Database(url)
        upgrade(database)
        store(database, clock, [funds_failure("skew")])
        gated = GatedProvider()
        first = dispatcher(
            database, FixedClock(datetime.now(UTC)), {"email": gated}, database_time=True
        )
        runtime = build_runtime(
            Settings(database_url=url, outbox_file=str(tmp_path / "outbox.jsonl")),
            clock=lambda: datetime.now(UTC) + AHEAD,
            ingests=False,
        )
        assert runtime.dispatcher is not None
        close_after_test(runtime.delivery.providers.values())
        try:
            taken, sent = asyncio.run(_second_while_first_sends(first, gated, runtime.dispatcher))
            assert taken.claimed == 0 and sent.sent == 1
            assert not (tmp_path / "outbox.jsonl").exists()
        finally:
            runtime.database.dispose()
            database.dispose()
