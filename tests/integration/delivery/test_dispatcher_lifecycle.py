"""A dispatcher stopping and meeting trouble: it finishes the sends under way, rides out
a database outage or a replaced file, and a runtime that only delivers stops whole."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.providers.stub import StubProvider
from herald.service.writer import IngestFailed
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import ReadOnly
from tests.conftest import FixedClock
from tests.support.delivery import GatedProvider, dispatcher, funds_failure, store


def test_a_stopping_dispatcher_finishes_the_sends_under_way_and_starts_no_other(
    database: Database, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure(f"s{i}") for i in range(3)])
    provider = GatedProvider()
    worker = dispatcher(database, clock, {"email": provider}, concurrency=1)

    async def scenario() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        while not provider.started:
            await asyncio.sleep(0.01)
        stopping.set()  # as SIGTERM does, with one send under way
        provider.gate.set()
        await asyncio.wait_for(running, 5)

    asyncio.run(scenario())
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT message_id, status, attempts, claimed_by FROM messages"
        ).all()
    assert len(provider.started) == 1
    assert sorted((status, attempts, claimed) for _, status, attempts, claimed in rows) == [
        ("pending", 0, None),
        ("pending", 0, None),
        ("sent", 1, None),
    ]
    assert [m for m, status, *_ in rows if status == "sent"] == provider.started


def test_a_database_outage_logs_one_traceback_and_is_tried_further_and_further_apart(
    clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'broken.db'}")  # its own: it is broken below
    upgrade(database)
    with database.writer.begin() as connection:
        connection.exec_driver_sql("DROP TABLE messages")  # every round fails from now on
    worker = dispatcher(database, clock, {"email": StubProvider(tmp_path / "o.jsonl")})
    caplog.set_level("INFO", logger="herald.delivery")

    async def two_seconds() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(2.0, stopping.set)
        await worker.run(stopping)

    asyncio.run(two_seconds())

    failed = [r for r in caplog.records if "dispatch round failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed][:2] == [True, False]
    assert sum(r.exc_info is not None for r in failed) == 1
    # The first line says why too, not only the traceback under it.
    assert failed[0].getMessage() == "dispatch round failed: no such table: messages; retrying"
    # Each repeat is one line with what the database said, not the statement that failed.
    assert failed[1].getMessage().endswith("in a row): no such table: messages")
    # 0.5 s, then 1 s, then 2 s between tries: three in two seconds, not eight.
    assert 2 <= len(failed) <= 4
    database.dispose()


def test_a_dispatcher_whose_sqlite_file_is_replaced_says_so_once(
    clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    """It went on delivering from the file it held open, without a word, while the
    messages stored in the file now at the path waited for ever."""
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")  # its own: its file is replaced below
    upgrade(database)
    store(database, clock, [funds_failure("f1")])
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(database, clock, {"email": StubProvider(outbox)})
    caplog.set_level("INFO", logger="herald.delivery")
    said = "not the SQLite file this process opened; this dispatcher delivers only"

    async def replaced_under_it() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        async with asyncio.timeout(10):
            while not outbox.exists():  # it delivers from its file
                await asyncio.sleep(0.01)
            # Connections opened after the file is replaced open the new, empty one: the
            # test's own writes must find connections to the old file in the pool even
            # while a round of the dispatcher holds one (as on a loaded machine).
            held = [database.writer.connect() for _ in range(4)]
            for connection in held:
                connection.close()
            restored = tmp_path / "restored.db"
            restored.write_bytes(b"")
            restored.replace(path)
            while said not in caplog.text:
                await asyncio.sleep(0.01)
            for n in (2, 3):  # rounds more, stored in the file it holds: said once only
                store(database, clock, [funds_failure(f"f{n}")])
                while len(outbox.read_text().splitlines()) < n:
                    await asyncio.sleep(0.01)
        stopping.set()
        await running

    asyncio.run(replaced_under_it())
    database.dispose()

    assert sum(said in r.getMessage() for r in caplog.records) == 1
    assert f"{path.resolve()} is another file" in caplog.text


def test_a_runtime_that_only_delivers_stops_whole_and_never_starts_the_writer(
    tmp_path: Path,
) -> None:
    from herald.bootstrap import build_runtime
    from herald.config import Settings

    runtime = build_runtime(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'herald.db'}",
            outbox_file=str(tmp_path / "outbox.jsonl"),
            dispatcher=True,
        )
    )

    before = herald_threads()

    async def try_to_ingest_while_delivering() -> None:
        stopping = asyncio.Event()
        delivering = asyncio.create_task(runtime.deliver(stopping))
        async with asyncio.timeout(5):
            while herald_threads() == before:  # the checkpointer's: delivery has begun
                await asyncio.sleep(0.01)
        with pytest.raises(IngestFailed):  # while delivering: the writer takes nothing
            await runtime.writer.ingest([])
        stopping.set()
        await delivering
        with pytest.raises(IngestFailed, match="stopping"):
            await runtime.writer.ingest([])

    asyncio.run(try_to_ingest_while_delivering())
    assert herald_threads() == before  # the checkpointer's is gone again


def herald_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("herald-")}
