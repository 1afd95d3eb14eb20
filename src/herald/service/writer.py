"""Group commit: requests that arrive together share one transaction, and each answer waits
for the commit that holds its events, so a reply still means "committed".

Two writers, one per kind of database:
- ``LoopWriter`` (SQLite) writes on the event loop itself. A commit takes microseconds and
  SQLite admits one writer anyway: requests that arrive while a batch is being written
  form the next batch. Measured: about 30 events per commit under 32 concurrent clients.
- ``ThreadWriter`` (PostgreSQL) writes on threads: while one transaction waits for its
  commit to be flushed to disk, the next is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from datetime import datetime
from typing import Protocol

from herald.delivery.quiet_hours import HoldPolicy, no_hold
from herald.domain.model import Event
from herald.observability.logging import request_id
from herald.observability.outage import OutageLog
from herald.rules.definition import RuleSet
from herald.service.ingest import IngestResult, ingest
from herald.store.database import Database
from herald.store.database_errors import gave_up_waiting, unavailable
from herald.store.sqlite_connections import SQLITE_BUSY_TIMEOUT_MS
from herald.store.unit_of_work import UnitOfWork, WriteLockBusy, when_unlocked

log = logging.getLogger(__name__)

_MAX_EVENTS = 2000  # per transaction: a batch of 1,000 and the requests that came with it
_SMALL_BATCH = 16  # events: a ThreadWriter's batch this small waits a little for company


class IngestFailed(RuntimeError):
    """Nothing of the request was stored: the database failed, or Herald is stopping.
    The client may retry."""


class DatabaseUnavailable(IngestFailed):
    """Nothing of the request was stored: the database cannot serve for now (down,
    unreachable, locked, read-only, full). The client should retry in a few seconds."""


class Writer(Protocol):
    """The write path of a process: stores events, and answers once they are committed."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new requests; finish those already taken (within ``timeout`` seconds)."""

    async def ingest(self, events: Sequence[Event]) -> list[IngestResult]:
        """One result per event, in order, once they are committed; raises
        ``IngestFailed`` when they could not be."""
        ...

    def locked_out(self) -> bool:
        """Whether ingestion lately gave up waiting for another process's write lock, and
        none has had it since: what /readyz says of SQLite's one writer."""
        ...


class _Reply:
    """Where a request's results go: its future, asyncio's (``LoopWriter``) or a thread's
    (``ThreadWriter``), answered once. A request cancelled meanwhile (its client gone, the
    server stopping) has cancelled it: answering it then must not raise in the writer,
    which would end a writer thread. Made in the request's own context, it keeps the
    request's id for the lines written of it alone."""

    def __init__(
        self, future: asyncio.Future[list[IngestResult]] | Future[list[IngestResult]]
    ) -> None:
        self._future = future
        self.request_id = request_id.get()

    def set_result(self, value: list[IngestResult]) -> None:
        with contextlib.suppress(InvalidStateError, asyncio.InvalidStateError):
            self._future.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        with contextlib.suppress(InvalidStateError, asyncio.InvalidStateError):
            self._future.set_exception(exc)


_Job = tuple[Sequence[Event], _Reply]
_Queued = tuple[Sequence[Event], _Reply, float]


class _Committer:
    """Commits the events of several requests in one unit of work and answers each."""

    def __init__(
        self,
        database: Database,
        ruleset: RuleSet,
        *,
        clock: Callable[[], datetime],
        hold: HoldPolicy,
        on_commit: Callable[[list[IngestResult]], None],
    ) -> None:
        self._database = database
        self._ruleset = ruleset
        self._clock = clock
        self._hold = hold
        self._on_commit = on_commit
        self._outage = OutageLog(log, "ingestion")
        # When a write last failed for having waited past PostgreSQL's timeout (monotonic),
        # until one succeeds. Set by writer threads, read by /readyz: a float assigned.
        self.gave_up_waiting_at: float | None = None

    def write(self, jobs: list[_Job], *, wait: bool = True, arrived: float | None = None) -> None:
        """Commit ``jobs`` and answer them. ``wait=False``: raise ``WriteLockBusy``, having
        done nothing, if another connection holds SQLite's write lock. ``arrived`` (the
        monotonic time the first of them came): their statements may run for what is left
        of PostgreSQL's statement timeout counted from then."""
        # The lines written of one request carry its id; those of several, none.
        said_for = request_id.set(jobs[0][1].request_id if len(jobs) == 1 else None)
        try:
            self._write(jobs, wait, arrived)
        finally:
            request_id.reset(said_for)

    def _write(self, jobs: list[_Job], wait: bool, arrived: float | None) -> None:
        try:
            results = self._commit([e for events, _ in jobs for e in events], wait, arrived)
        except WriteLockBusy:
            raise
        except Exception as exc:
            if unavailable(exc):
                if gave_up_waiting(exc):
                    self.gave_up_waiting_at = time.monotonic()
                # Each request would fail alike: one at a time would only knock again.
                self._outage.failed(exc, requests=len(jobs))
                for _, answer in jobs:
                    answer.set_exception(DatabaseUnavailable("the database is unavailable"))
                return
            if len(jobs) == 1:
                log.exception("ingestion failed; the request is answered with an error")
                jobs[0][1].set_exception(IngestFailed("could not store the events"))
                return
            # Keep one bad request from failing its neighbours: retry them one by one
            # (waiting for the lock in SQLite's busy handler: a rare path, kept simple).
            for job in jobs:
                self.write([job], arrived=arrived)
            return
        self._outage.succeeded()
        self.gave_up_waiting_at = None
        offset = 0
        for events, answer in jobs:
            answer.set_result(results[offset : offset + len(events)])
            offset += len(events)
        try:
            self._on_commit(results)
        except Exception:
            log.exception("post-commit hook failed")

    def _commit(self, events: list[Event], wait: bool, arrived: float | None) -> list[IngestResult]:
        # Its statement timeout counts from its first request's arrival: else a batch that
        # waited for a thread while those before it waited for a lock waited it again.
        with UnitOfWork(self._database, wait=wait, since=arrived) as uow:
            results = ingest(uow, events, self._ruleset, now=self._clock(), hold=self._hold)
            uow.commit()
        return results


class LoopWriter:
    """Group commit on the event loop, for SQLite (see the module's docstring)."""

    def __init__(
        self,
        database: Database,
        ruleset: RuleSet,
        *,
        clock: Callable[[], datetime],
        hold: HoldPolicy = no_hold,
        on_commit: Callable[[list[IngestResult]], None] = lambda _results: None,
        lock_wait_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        """``lock_wait_s``: how long a request waits for another process's write lock
        before it fails (as a wait in SQLite's busy handler would)."""
        self._committer = _Committer(database, ruleset, clock=clock, hold=hold, on_commit=on_commit)
        self._lock_wait_s = lock_wait_s
        # When a batch last gave up waiting for the lock (monotonic), until one gets it.
        self._gave_up_at: float | None = None
        # Each request with the time it arrived, which bounds its wait for the lock.
        self._pending: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._running = False

    def start(self) -> None:
        self._running = True

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new requests. A batch being written finishes on the loop: there is no
        thread to wait for, so ``timeout`` has nothing to bound."""
        self._running = False

    def locked_out(self) -> bool:
        """For one lock wait after a batch gave up waiting, unless one has had the lock
        since. Not for ever: a process its load balancer took out gets no request that
        would find the lock free again, and is put back to try."""
        gave_up_at = self._gave_up_at
        return gave_up_at is not None and time.monotonic() - gave_up_at < self._lock_wait_s

    async def ingest(self, events: Sequence[Event]) -> list[IngestResult]:
        if not self._running:
            raise IngestFailed("Herald is not taking events: it is stopping")
        future: asyncio.Future[list[IngestResult]] = asyncio.get_running_loop().create_future()
        self._pending.append((events, _Reply(future), time.monotonic()))
        if self._flusher is None or self._flusher.done():
            # Not in the context of the request that happened to start it: its lines would
            # carry that request's id for as long as requests keep it writing.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let requests already readable join this batch
            jobs: list[_Job] = []
            size = 0
            first_arrived = self._pending[0][2]
            while self._pending and size < _MAX_EVENTS:
                events, reply, _ = self._pending.pop(0)
                jobs.append((events, reply))
                size += len(events)
            await self._write_when_unlocked(jobs, first_arrived)

    async def _write_when_unlocked(self, jobs: list[_Job], first_arrived: float) -> None:
        # Another process (a worker, a prune, a checkpoint) may hold SQLite's write lock.
        # Waiting for it in SQLite's busy handler would stop the event loop; polling
        # keeps it answering, and gathering the next batch, meanwhile. The wait counts
        # from the batch's first request: one that arrived while the batch before it
        # waited has waited too, and waiting the whole time again made its answer, a
        # 503, come after twice the wait, past many clients' timeouts.
        left = first_arrived + self._lock_wait_s - time.monotonic()
        try:
            await when_unlocked(
                lambda: self._committer.write(jobs, wait=False), timeout_s=max(left, 0.0)
            )
            self._gave_up_at = None
        except WriteLockBusy:
            self._gave_up_at = time.monotonic()
            log.error("the database stayed locked by another process; requests fail")
            for _, answer in jobs:
                answer.set_exception(
                    DatabaseUnavailable("the database is locked by another process")
                )


_STOP = object()


class ThreadWriter:
    """Group commit on writer threads, for PostgreSQL (see the module's docstring)."""

    def __init__(
        self,
        database: Database,
        ruleset: RuleSet,
        *,
        clock: Callable[[], datetime],
        hold: HoldPolicy = no_hold,
        on_commit: Callable[[list[IngestResult]], None] = lambda _results: None,
        gather_seconds: float = 0.0,
        threads: int = 1,
        locked_out_s: float = 30.0,
    ) -> None:
        """``gather_seconds``: how long a small batch waits for more requests to join it.
        ``threads`` > 1 keeps that many transactions in flight, which is safe where the
        database's locks, not the writer, serialise work on one user (PostgreSQL's
        advisory locks). ``locked_out_s``: how long ``locked_out`` holds after a write
        gave up waiting, unless one succeeds meanwhile."""
        self._committer = _Committer(database, ruleset, clock=clock, hold=hold, on_commit=on_commit)
        self._gather_seconds = gather_seconds
        # Each request with the time it arrived, from which its statement timeout counts.
        self._queue: queue.SimpleQueue[_Queued | object] = queue.SimpleQueue()
        self._thread_count = threads
        self._threads: list[threading.Thread] = []
        self._locked_out_s = locked_out_s

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, name=f"herald-writer-{n}", daemon=True)
            for n in range(self._thread_count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def locked_out(self) -> bool:
        """For ``locked_out_s`` after a write waited past PostgreSQL's timeout (a table
        locked, a server too busy), unless one has succeeded since: as on SQLite, not for
        ever, so that a process its load balancer took out is put back to try."""
        gave_up_at = self._committer.gave_up_waiting_at
        return gave_up_at is not None and time.monotonic() - gave_up_at < self._locked_out_s

    async def ingest(self, events: Sequence[Event]) -> list[IngestResult]:
        future: Future[list[IngestResult]] = Future()
        if not self._threads:
            raise IngestFailed("Herald is not taking events: it is stopping")
        self._queue.put((events, _Reply(future), time.monotonic()))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            events, reply, arrived = _queued(first)
            jobs: list[_Job] = [(events, reply)]
            size = len(events)
            stop_after = False
            deadline = time.monotonic() + self._gather_seconds
            while size < _MAX_EVENTS:
                # A small batch waits a little for company: on a database whose commit
                # waits for a disk flush, fewer and larger transactions are the way to
                # throughput. A batch that is already large goes at once.
                wait = deadline - time.monotonic() if size < _SMALL_BATCH else 0.0
                try:
                    item = self._queue.get(timeout=max(0.0, wait))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                events, reply, _ = _queued(item)
                jobs.append((events, reply))
                size += len(events)
            self._committer.write(jobs, arrived=arrived)
            if stop_after:
                return


def _queued(item: _Queued | object) -> _Queued:
    assert isinstance(item, tuple)  # the queue holds requests and the one stop marker
    return item
