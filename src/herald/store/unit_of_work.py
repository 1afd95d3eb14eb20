"""One transaction per unit of work: the event, its decisions and its messages commit together."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from herald.store.database import Database
from herald.store.database_errors import takes_no_writes
from herald.store.erasure import ErasureRepository
from herald.store.events import EventRepository
from herald.store.outbox import OutboxRepository
from herald.store.retention import RetentionRepository
from herald.store.sqlite_connections import SQLITE_BUSY_TIMEOUT_MS, connect_without_waiting
from herald.store.users import UserRepository

T = TypeVar("T")
# Polls of a taken write lock: soon at first (a commit takes about a millisecond), then
# less often, so that a long holder (a prune batch) costs little CPU.
_FIRST_POLL_S = 0.00025
_LAST_POLL_S = 0.005

_LOCK_IN_ORDER = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT unnest(CAST(:ids AS bigint[])) AS k ORDER BY 1) AS ordered"
)
# The lock every ingestion takes besides its keys: shared by those that lock their keys one
# by one, exclusive for one with too many keys to, so that it still excludes them all.
# Keys are CRC-32 values, never negative.
_ALL_KEYS = -1
_SHARE_ALL = text(f"SELECT pg_advisory_xact_lock_shared({_ALL_KEYS})")
_LOCK_ALL = text(f"SELECT pg_advisory_xact_lock({_ALL_KEYS})")
# A transaction that waited this long before its first statement (for a pooled connection,
# for a writer thread) counts the wait against PostgreSQL's statement timeout: else one
# that waited for a connection while the transactions holding them waited for a lock held
# elsewhere waited the whole timeout again, and its 503 came after twice the timeout. A
# shorter wait is not worth a statement more.
_WAIT_WORTH_COUNTING_S = 0.1
# Whoever set the statement timeout in force (Herald, the URL, the role, the server), this
# transaction's is that much shorter; at least 1 ms, as 0 would lift it.
_SPEND_STATEMENT_TIME = text(
    "SELECT set_config('statement_timeout', "
    "CAST(GREATEST(CAST(setting AS bigint) - :spent_ms, 1) AS text), true) "
    "FROM pg_settings WHERE name = 'statement_timeout' AND CAST(setting AS bigint) > 0"
)
# PostgreSQL keeps every lock in one table of max_locks_per_transaction (64 by default)
# times max_connections slots; a batch's transaction locking each of its 2,000 users and
# event ids would fill it, and every other transaction then fails with "out of shared
# memory". Groups of single events stay below this bound and keep locking key by key.
MAX_KEY_LOCKS = 128


class WriteLockBusy(RuntimeError):
    """Another connection holds SQLite's write lock; nothing was done. Try again later."""


async def when_unlocked(
    work: Callable[[], T], *, timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000
) -> T:
    """Run ``work``, which opens a ``UnitOfWork(wait=False)`` before doing anything else,
    as soon as SQLite's write lock is free, without blocking the event loop meanwhile.
    Raises ``WriteLockBusy`` if the lock stays taken for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = _FIRST_POLL_S
    while True:
        try:
            return work()
        except WriteLockBusy:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _LAST_POLL_S)


class UnitOfWork:
    """A write transaction with the repositories bound to it.

    Nothing is committed unless ``commit()`` is called; leaving the block without it
    rolls back. Repositories never commit on their own.

    ``wait=False`` (SQLite): raise ``WriteLockBusy`` at once when another process or
    thread holds the write lock, instead of sleeping in SQLite's busy handler. Code on
    an event loop uses it to keep serving requests while it waits.
    """

    events: EventRepository
    users: UserRepository
    outbox: OutboxRepository
    retention: RetentionRepository
    erasure: ErasureRepository

    def __init__(
        self, database: Database, *, wait: bool = True, since: float | None = None
    ) -> None:
        """``since``: the monotonic time the work was asked for, from which PostgreSQL's
        statement timeout counts (by default, when the block is entered)."""
        self._database = database
        self._wait = wait
        self._since = since
        self._connection: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        since = time.monotonic() if self._since is None else self._since
        if self._database.is_sqlite and not self._wait:
            self._connection = connect_without_waiting(self._database.writer)
        else:
            self._connection = self._database.writer.connect()
        try:
            self._connection.begin()
        except OperationalError as exc:
            self._connection.close()
            self._connection = None
            if not self._wait and "locked" in str(exc.orig):
                raise WriteLockBusy(str(exc.orig)) from None
            raise
        _count_wait(self._connection, self._database.dialect, since)
        _bind_repositories(self, self._connection, self._database.dialect)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        try:
            if exc is not None and takes_no_writes(exc):
                # A session keeps the read-only default it started with (a database set
                # read-only for a cutover, then back): pooled, it would refuse every
                # write for ever. Its replacement reads the server's default anew, or,
                # with a multi-host URL's target_session_attrs=read-write, the primary.
                self._connection.invalidate()
            elif self._connection.in_transaction():
                self._connection.rollback()
        finally:
            self._connection.close()
            self._connection = None

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()

    def lock(self, keys: Iterable[str]) -> None:
        """Serialise work on the same keys (users, event ids) across processes until commit.

        PostgreSQL takes transaction-scoped advisory locks in a fixed order (no deadlock),
        one per key up to ``MAX_KEY_LOCKS`` keys; beyond, one lock that excludes every
        other ingestion until commit. Call it once per unit of work. SQLite needs nothing:
        BEGIN IMMEDIATE already admits one writer at a time.
        """
        if self._database.dialect != "postgresql":
            return
        assert self._connection is not None
        ids = sorted({zlib.crc32(key.encode()) for key in keys})
        if len(ids) > MAX_KEY_LOCKS:
            self.lock_all()
        elif ids:
            self._connection.execute(_SHARE_ALL)
            self._connection.execute(_LOCK_IN_ORDER, {"ids": ids})

    def lock_all(self) -> None:
        """Wait for every ingestion in progress to end, and hold new ones back until
        commit: what ``lock`` takes for any key is taken here for all of them. SQLite needs
        nothing: BEGIN IMMEDIATE already admits one writer at a time."""
        if self._database.dialect != "postgresql":
            return
        assert self._connection is not None
        self._connection.execute(_LOCK_ALL)


class ReadOnly:
    """A read transaction (a consistent snapshot on both backends): the audit, retention's reads."""

    events: EventRepository
    users: UserRepository
    outbox: OutboxRepository
    retention: RetentionRepository
    erasure: ErasureRepository

    def __init__(self, database: Database) -> None:
        self._database = database

    def __enter__(self) -> ReadOnly:
        since = time.monotonic()
        self.connection = self._database.reader.connect()
        if self._database.dialect == "postgresql":
            # PostgreSQL's default, READ COMMITTED, gives each statement a snapshot of its
            # own: an audit could list a message as pending beside the attempt that sent it.
            # The pool resets the level when the connection is returned.
            self.connection.execution_options(isolation_level="REPEATABLE READ")
        try:
            self.connection.begin()
        except BaseException:
            self.connection.close()  # back to the pool now, not when collected
            raise
        try:
            _count_wait(self.connection, self._database.dialect, since)
        except BaseException:
            self.connection.rollback()
            self.connection.close()
            raise
        _bind_repositories(self, self.connection, self._database.dialect)
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.rollback()
        self.connection.close()


def _count_wait(connection: Connection, dialect: str, since: float) -> None:
    """Let the transaction's statements run for what is left of PostgreSQL's statement
    timeout (where one is in force) counted from ``since``. SQLite has none."""
    waited = time.monotonic() - since
    if dialect == "postgresql" and waited >= _WAIT_WORTH_COUNTING_S:
        connection.execute(_SPEND_STATEMENT_TIME, {"spent_ms": round(waited * 1000)})


def _bind_repositories(work: UnitOfWork | ReadOnly, connection: Connection, dialect: str) -> None:
    """Give ``work`` the repositories, all on ``connection`` (one transaction)."""
    work.events = EventRepository(connection, dialect)
    work.users = UserRepository(connection, dialect)
    work.outbox = OutboxRepository(connection, dialect)
    work.retention = RetentionRepository(connection)
    work.erasure = ErasureRepository(connection)
