"""On SQLite, another process may hold the write lock: a `herald worker`, a prune, a
checkpoint. Code on the event loop waits for it without stopping the loop, so the
server keeps answering meanwhile, and does its write once the lock is free."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.delivery.dispatcher import Dispatcher
from herald.delivery.provider import DeliveryResult, SendRequest
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestStatus, ingest
from herald.service.writer import DatabaseUnavailable, LoopWriter
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.sqlite_connections import SQLITE_BUSY_TIMEOUT_MS, set_busy_timeout
from herald.store.unit_of_work import ReadOnly, UnitOfWork, WriteLockBusy, when_unlocked
from tests.support.events import opted_in_signup
from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_command, herald_environment
from tests.support.serving import signup

RULES = load_ruleset()
NOW = datetime(2025, 11, 3, 12, tzinfo=UTC)
# Only if what a test waits for never comes: its failure then says so.
FALLBACK_S = 10.0
# Timer ticks of 10 ms a loop must fire while the lock is held: a loop blocked in
# SQLite's busy handler fires none until the lock is released.
TICKS = 10
# How long an ingestion waits for another process's write lock before it answers 503.
LOCK_WAIT_S = SQLITE_BUSY_TIMEOUT_MS / 1000


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    yield path


class LockHolder:
    """Another connection (as another process would) holds the write lock from now until
    ``release()`` is called, or until ``FALLBACK_S`` have passed; ``released_on_time``
    says which came first."""

    def __init__(self, path: Path, fallback_s: float = FALLBACK_S) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._connection.execute("BEGIN IMMEDIATE")
        self._asked = threading.Event()
        self._fallback_s = fallback_s
        self.released_on_time = False
        self.released = threading.Event()
        self._thread = threading.Thread(target=self._hold)
        self._thread.start()

    def _hold(self) -> None:
        self.released_on_time = self._asked.wait(self._fallback_s)
        self._connection.execute("COMMIT")
        self._connection.close()
        self.released.set()

    def release(self) -> None:
        self._asked.set()

    def join(self) -> None:
        self.release()
        self._thread.join()


async def ticks_then_release(work: Awaitable[Any], holder: LockHolder) -> Any:
    """Run ``work`` while the lock is held; release it once the loop has fired ``TICKS``
    10 ms timers meanwhile (which it cannot do while blocked)."""
    task = asyncio.ensure_future(work)
    for _ in range(TICKS):
        await asyncio.sleep(0.01)
    assert not task.done(), (
        f"the work was done before the loop could fire {TICKS} timers: the loop stopped "
        "while the work waited for the lock"
    )
    holder.release()
    return await task


def test_a_unit_of_work_that_must_not_wait_says_so_at_once(sqlite_path: Path) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    holder = LockHolder(sqlite_path)
    # Had it waited, it would have waited for the fallback and then got the lock.
    with pytest.raises(WriteLockBusy), UnitOfWork(database, wait=False):
        pass
    assert not holder.released.is_set()
    holder.release()
    with UnitOfWork(database) as uow:  # a waiting one gets the lock once it is released
        uow.commit()
    holder.join()
    assert holder.released_on_time
    database.dispose()


def test_a_connection_back_in_the_pool_waits_for_the_lock_again(sqlite_path: Path) -> None:
    """Not waiting is for one unit of work: other code that takes the same pooled
    connection later (a migration, a prune) still waits for a lock another holds."""
    database = Database(f"sqlite:///{sqlite_path}")
    with UnitOfWork(database, wait=False) as uow:
        uow.commit()
    holder = LockHolder(sqlite_path)
    threading.Timer(0.3, holder.release).start()
    with database.writer.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE waited (id INTEGER)")
    assert holder.released.is_set()  # it waited for the release, and did not give up
    holder.join()
    database.dispose()


def test_a_connection_that_stopped_waiting_waits_again_once_back_in_the_pool(
    sqlite_path: Path,
) -> None:
    """As a checkpoint's restart does: a shorter wait is for the one who set it."""
    database = Database(f"sqlite:///{sqlite_path}")
    with database.writer.connect() as connection:
        set_busy_timeout(connection, 0)
    holder = LockHolder(sqlite_path)
    threading.Timer(0.3, holder.release).start()
    with database.writer.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE waited (id INTEGER)")
    assert holder.released.is_set()
    holder.join()
    database.dispose()


def test_a_writer_that_does_not_wait_leaves_the_next_one_that_does_not_wait_alike(
    sqlite_path: Path,
) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    for _ in range(2):
        with UnitOfWork(database, wait=False) as uow:
            uow.commit()
    holder = LockHolder(sqlite_path)
    with pytest.raises(WriteLockBusy), UnitOfWork(database, wait=False):
        pass
    assert not holder.released.is_set()
    holder.release()
    holder.join()
    database.dispose()


def test_ingestion_waits_for_the_lock_without_stopping_the_event_loop(sqlite_path: Path) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    writer = LoopWriter(database, RULES, clock=lambda: NOW)
    holder = LockHolder(sqlite_path)

    async def scenario() -> Any:
        writer.start()
        try:
            return await ticks_then_release(writer.ingest([opted_in_signup("u1")]), holder)
        finally:
            writer.stop()

    [result] = asyncio.run(scenario())
    holder.join()
    database.dispose()
    assert result.status is IngestStatus.ACCEPTED
    assert holder.released_on_time, "the loop stopped while ingestion waited for the lock"


def test_a_request_that_came_while_another_waited_for_the_lock_waits_no_longer_than_it(
    sqlite_path: Path,
) -> None:
    # It waited for the lock afresh once the first request gave up: its 503 came after
    # nearly twice the wait (60 s for the server's 30), past many clients' timeouts.
    database = Database(f"sqlite:///{sqlite_path}")
    writer = LoopWriter(database, RULES, clock=lambda: NOW, lock_wait_s=1.0)
    holder = LockHolder(sqlite_path)

    async def timed(delay_s: float, user: str) -> tuple[float, BaseException | None]:
        await asyncio.sleep(delay_s)
        started = time.monotonic()
        try:
            await writer.ingest([opted_in_signup(user)])
        except DatabaseUnavailable as exc:
            return time.monotonic() - started, exc
        return time.monotonic() - started, None

    async def scenario() -> list[tuple[float, BaseException | None]]:
        writer.start()
        try:
            return await asyncio.gather(timed(0.0, "u1"), timed(0.1, "u2"))
        finally:
            writer.stop()

    (_, first), (second_waited, second) = asyncio.run(scenario())
    holder.join()
    database.dispose()
    assert first is not None and second is not None, "a request went through a held lock"
    assert 0.85 <= second_waited < 1.5, f"the second request waited {second_waited:.2f} s"


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
    writer = LoopWriter(database, RULES, clock=lambda: NOW)
    provider = RecordingProvider()
    dispatcher = Dispatcher(
        database, {"email": provider}, worker_id="w", clock=lambda: NOW, inline_storage=True
    )

    async def scenario() -> Any:
        writer.start()
        await writer.ingest([opted_in_signup("u1")])
        holder = LockHolder(sqlite_path)
        try:
            return await ticks_then_release(dispatcher.run_once(), holder), holder
        finally:
            writer.stop()

    report, holder = asyncio.run(scenario())
    holder.join()
    database.dispose()
    assert report.sent == 1 and len(provider.sent) == 1
    assert holder.released_on_time, "the loop stopped while the dispatcher waited for the lock"


class LeaseReadingProvider:
    """Reads, as it sends, how long its message's claim has left."""

    name = "lease-reading"
    local = False

    def __init__(self, database: Database) -> None:
        self._database = database
        self.lease_left_s: list[float] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        with ReadOnly(self._database) as read:
            row = read.outbox.get(request.message_id)
        self.lease_left_s.append(row.lease_until_us / 1e6 - time.time())
        return DeliveryResult.sent("read")

    async def aclose(self) -> None:
        pass


def test_a_claim_waiting_for_the_lock_starts_its_lease_once_it_has_it(sqlite_path: Path) -> None:
    # Counted from before the wait, the lease ran out that much before the sends that
    # were meant to fit in it: another dispatcher could claim a message being sent.
    database = Database(f"sqlite:///{sqlite_path}")
    with UnitOfWork(database) as uow:
        ingest(uow, [opted_in_signup("u1")], RULES, now=NOW)
        uow.commit()
    provider = LeaseReadingProvider(database)
    dispatcher = Dispatcher(
        database,
        {"email": provider},
        worker_id="w",
        clock=lambda: datetime.now(UTC),
        lease_seconds=3.0,
        inline_storage=True,
    )

    async def scenario() -> Any:
        holder = LockHolder(sqlite_path)
        asyncio.get_running_loop().call_later(1.5, holder.release)
        report = await dispatcher.run_once()
        holder.join()
        return report

    report = asyncio.run(scenario())
    database.dispose()
    assert report.sent == 1
    [left] = provider.lease_left_s
    assert left > 2.5, f"the send began with {left:.2f} s of its 3 s lease left"


def test_waiting_for_the_lock_gives_up_after_its_timeout(sqlite_path: Path) -> None:
    database = Database(f"sqlite:///{sqlite_path}")
    attempts: list[float] = []

    def work() -> None:
        attempts.append(time.monotonic())
        with UnitOfWork(database, wait=False):
            pass

    holder = LockHolder(sqlite_path)
    with pytest.raises(WriteLockBusy):
        asyncio.run(when_unlocked(work, timeout_s=0.1))
    assert not holder.released.is_set()  # it gave up while the lock was still held
    holder.join()
    database.dispose()
    assert len(attempts) > 3  # it tried again, sooner than SQLite's handler would


class LockTakenAfterSend:
    """Sends, then has another connection take the write lock (a shell left in a write
    transaction, say) and hold it for ``seconds``, before the dispatcher records the send."""

    name = "lock-taken"
    local = False

    def __init__(self, path: Path, seconds: float) -> None:
        self._path = path
        self._seconds = seconds
        self.sent: list[str] = []
        self.holders: list[LockHolder] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sent.append(request.message_id)
        if not self.holders:
            self.holders.append(LockHolder(self._path, fallback_s=self._seconds))
        return DeliveryResult.sent("recorded")

    async def aclose(self) -> None:
        pass


def test_a_round_recorded_after_a_long_hold_of_the_lock_is_never_sent_again(
    sqlite_path: Path,
) -> None:
    """The write lock is held for longer than a wait for it lasts (30 s by default, 0.5 s
    here), but not for the whole of the claims' leases: the round's recording must wait
    on, not give up and leave its messages to be claimed and sent again when the leases
    run out."""
    database = Database(f"sqlite:///{sqlite_path}")
    with UnitOfWork(database) as uow:
        ingest(uow, [opted_in_signup("u1")], RULES, now=NOW)
        uow.commit()
    provider = LockTakenAfterSend(sqlite_path, seconds=2.0)
    dispatcher = Dispatcher(
        database,
        {"email": provider},
        worker_id="w",
        clock=lambda: datetime.now(UTC),
        lease_seconds=8.0,
        inline_storage=True,
        lock_wait_s=0.5,
    )

    report = asyncio.run(dispatcher.run_once())
    provider.holders[0].join()
    with ReadOnly(database) as read:
        [(status, attempts)] = read.connection.exec_driver_sql(
            "SELECT status, attempts FROM messages"
        ).all()
    database.dispose()
    assert report.sent == 1 and len(provider.sent) == 1
    assert (status, attempts) == ("sent", 1)


def opened(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has the file at ``path`` open."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(link.resolve() == path for link in fds.iterdir())
    except (FileNotFoundError, PermissionError):  # it ended, or is still starting up
        return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
@pytest.mark.parametrize(
    ("command", "said_after"),
    [
        (
            ["messages", "retry", "--failed"],
            "interrupted before the re-queue was committed: nothing was re-queued; run the "
            "same command again",
        ),
        (
            ["messages", "cancel", "--rule", "WELCOME_EMAIL"],
            "interrupted before the cancel was committed: nothing was cancelled",
        ),
        (
            ["users", "forget", "u_1"],
            "interrupted before the user was forgotten: nothing was changed",
        ),
    ],
    ids=["retry", "cancel", "forget"],
)
def test_ctrl_c_stops_a_command_waiting_for_the_lock_at_once_saying_nothing_changed(
    command: list[str], said_after: str, sqlite_path: Path
) -> None:
    """SQLite waits for the lock in its busy handler, where Python cannot act on Ctrl-C:
    a `messages retry` (or a prune, an upgrade) held up by another process's lock ignored
    it until that lock was released, or for the whole 30 s busy timeout."""
    holder = LockHolder(sqlite_path)
    try:
        command = subprocess.Popen(
            [*herald_command(), *command],
            env=herald_environment(HERALD_DATABASE_URL=f"sqlite:///{sqlite_path}"),
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + FALLBACK_S
        while not opened(command.pid, sqlite_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # past opening the database, into the wait for the lock
        interrupted = time.monotonic()
        command.send_signal(signal.SIGINT)
        _, said = command.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        holder.join()  # held until the command ended

    assert command.returncode == 130, said
    assert said.splitlines() == [f"error: {said_after}"]
    assert took < 3, f"Ctrl-C took {took:.1f} s to stop the command"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
def test_ctrl_c_on_a_worker_waiting_to_upgrade_its_schema_says_where_the_schema_is(
    tmp_path: Path,
) -> None:
    """`herald worker` (and `serve`) upgrade an SQLite schema by themselves: interrupted
    there, they exited 130 without a word about the schema."""
    path = tmp_path / "old.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database, to="0001")
    database.dispose()
    holder = LockHolder(path)
    try:
        worker = subprocess.Popen(
            [*herald_command(), "worker", "--database", f"sqlite:///{path}"],
            env=herald_environment(),
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + FALLBACK_S
        while not opened(worker.pid, path) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # into the upgrade's wait for the lock
        worker.send_signal(signal.SIGINT)
        _, said = worker.communicate(timeout=30)
    finally:
        holder.join()

    assert worker.returncode == 130, said
    assert said.splitlines()[-1] == (
        "error: interrupted while opening the database (waiting for it to answer, or for a "
        "lock another process holds, or upgrading its schema): the schema is at revision 0001"
    )


def test_readyz_says_so_while_ingestion_gives_up_waiting_for_another_process_s_lock(
    sqlite_path: Path, tmp_path: Path
) -> None:
    # Every event was answered 503 after its wait while /readyz said ready: a probe, or an
    # operator, saw a server taking writes that took none.
    url, port = f"sqlite:///{sqlite_path}", free_port()
    env = herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"))
    with HeraldProcess("locked-out", log_dir=tmp_path) as server:
        server.start(["serve", "--port", str(port), "--database", url], env=env, cwd=tmp_path)
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/readyz")
        holder = LockHolder(sqlite_path, fallback_s=LOCK_WAIT_S + 20)

        refused = httpx.post(base + "/events", json=signup("u_1", "a@example.org"), timeout=60)
        locked = httpx.get(base + "/readyz", timeout=5)
        holder.join()
        stored = httpx.post(base + "/events", json=signup("u_2", "b@example.org"), timeout=10)
        ready = httpx.get(base + "/readyz", timeout=5)

    assert holder.released_on_time
    assert refused.status_code == 503
    assert locked.status_code == 503
    assert locked.json()["database"].startswith("locked by another process:")
    assert (stored.status_code, ready.status_code) == (202, 200)
