"""Group commit: one writer thread ingests whatever requests are waiting in one transaction.

Each request waits for the commit that includes its events, so a reply still means
"committed"; but a few hundred concurrent requests share one transaction (one fsync, one
lock), which is what lets a single SQLite file take thousands of events per second.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from herald.delivery.quiet_hours import HoldPolicy, no_hold
from herald.domain.model import Event
from herald.rules.definition import RuleSet
from herald.service.ingest import IngestResult, ingest
from herald.store.database import Database
from herald.store.unit_of_work import UnitOfWork, WriteLockBusy, when_unlocked

log = logging.getLogger(__name__)

_Job = tuple[Sequence[Event], "Future[list[IngestResult]]"]
_STOP = object()
_SMALL_BATCH = 16  # events


class GroupCommitWriter:
    """Owns the write path of a process. ``submit`` is thread-safe and returns a future."""

    def __init__(
        self,
        database: Database,
        ruleset: RuleSet,
        *,
        clock: Callable[[], datetime],
        hold: HoldPolicy = no_hold,
        on_commit: Callable[[list[IngestResult]], None] = lambda _results: None,
        max_events: int = 2000,
        gather_seconds: float = 0.0,
        threads: int = 1,
    ) -> None:
        """``threads`` > 1 keeps that many transactions in flight: while one waits for its
        commit to be flushed, the next is being written. Safe where the database's locks,
        not the writer, serialise work on one user (PostgreSQL's advisory locks)."""
        self._database = database
        self._ruleset = ruleset
        self._clock = clock
        self._hold = hold
        self._on_commit = on_commit
        self._max_events = max_events
        self._gather_seconds = gather_seconds
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread_count = threads
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, name=f"herald-writer-{n}", daemon=True)
            for n in range(self._thread_count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    async def ingest(self, events: Sequence[Event]) -> list[IngestResult]:
        """Store ``events``; returns once they are committed."""
        return await asyncio.wrap_future(self.submit(events))

    def submit(self, events: Sequence[Event]) -> Future[list[IngestResult]]:
        future: Future[list[IngestResult]] = Future()
        if not self._threads:
            future.set_exception(RuntimeError("the writer is not running"))
            return future
        self._queue.put((events, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs: list[_Job] = [first]  # type: ignore[list-item]
            size = len(jobs[0][0])
            stop_after = False
            deadline = time.monotonic() + self._gather_seconds
            while size < self._max_events:
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
                jobs.append(item)  # type: ignore[arg-type]
                size += len(item[0])  # type: ignore[index]
            self._write(jobs)
            if stop_after:
                return

    def _write(self, jobs: list[_Job], *, wait: bool = True) -> None:
        """Commit ``jobs`` and resolve their futures. ``wait=False``: raise
        ``WriteLockBusy``, having done nothing, if another connection holds the lock."""
        try:
            results = self._commit([event for events, _ in jobs for event in events], wait)
        except WriteLockBusy:
            raise
        except Exception:
            if len(jobs) == 1:
                log.exception("ingestion failed; the request is answered with an error")
                jobs[0][1].set_exception(IngestFailed("could not store the events"))
                return
            # Keep one bad request from failing its neighbours: retry them one by one
            # (waiting for the lock in SQLite's busy handler: a rare path, kept simple).
            for job in jobs:
                self._write([job])
            return
        offset = 0
        for events, future in jobs:
            future.set_result(results[offset : offset + len(events)])
            offset += len(events)
        try:
            self._on_commit(results)
        except Exception:
            log.exception("post-commit hook failed")

    def _commit(self, events: list[Event], wait: bool) -> list[IngestResult]:
        with UnitOfWork(self._database, wait=wait) as uow:
            results = ingest(uow, events, self._ruleset, now=self._clock(), hold=self._hold)
            uow.commit()
        return results


class IngestFailed(RuntimeError):
    pass


class InlineGroupCommitWriter(GroupCommitWriter):
    """Group commit on the event loop itself, for SQLite.

    SQLite commits in microseconds (WAL, no fsync per commit), so writing on the loop
    costs less than handing every request to a thread and back: requests that arrive
    while a batch is being written simply form the next batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[tuple[Sequence[Event], asyncio.Future[list[IngestResult]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._running = False

    def start(self) -> None:
        self._running = True

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new requests. ``timeout`` is unused: there is no thread to wait for, and
        a batch being written finishes on the loop."""
        self._running = False

    async def ingest(self, events: Sequence[Event]) -> list[IngestResult]:
        if not self._running:
            raise RuntimeError("the writer is not running")
        future: asyncio.Future[list[IngestResult]] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let requests already readable join this batch
            jobs, size = [], 0
            while self._pending and size < self._max_events:
                events, future = self._pending.pop(0)
                jobs.append((events, _AsyncioResult(future)))
                size += len(events)
            await self._write_when_unlocked(jobs)  # type: ignore[arg-type]

    async def _write_when_unlocked(self, jobs: list[_Job]) -> None:
        # Another process (a worker, a prune, a checkpoint) may hold SQLite's write lock.
        # Waiting for it in SQLite's busy handler would stop the event loop; polling
        # keeps it answering, and gathering the next batch, meanwhile.
        try:
            await when_unlocked(lambda: self._write(jobs, wait=False))
        except WriteLockBusy:
            log.error("the database stayed locked by another process; requests fail")
            for _, future in jobs:
                future.set_exception(IngestFailed("the database is locked by another process"))


class _AsyncioResult:
    """Lets ``_write`` resolve an asyncio future as it resolves a thread future."""

    def __init__(self, future: asyncio.Future[list[IngestResult]]) -> None:
        self._future = future

    def set_result(self, value: list[IngestResult]) -> None:
        if not self._future.done():
            self._future.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(exc)
