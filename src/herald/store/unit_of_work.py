"""One transaction per unit of work: the event, its decisions and its messages commit together."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from types import TracebackType

from sqlalchemy import Connection, text

from herald.store.database import Database
from herald.store.events import EventRepository
from herald.store.outbox import OutboxRepository
from herald.store.users import UserRepository

_LOCK_IN_ORDER = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT unnest(CAST(:ids AS bigint[])) AS k ORDER BY 1) AS ordered"
)


class UnitOfWork:
    """A write transaction with the repositories bound to it.

    Nothing is committed unless ``commit()`` is called; leaving the block without it
    rolls back. Repositories never commit on their own.
    """

    events: EventRepository
    users: UserRepository
    outbox: OutboxRepository

    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        self._connection = self._database.writer.connect()
        self._connection.begin()
        dialect = self._database.dialect
        self.events = EventRepository(self._connection, dialect)
        self.users = UserRepository(self._connection, dialect)
        self.outbox = OutboxRepository(self._connection, dialect)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        try:
            if self._connection.in_transaction():
                self._connection.rollback()
        finally:
            self._connection.close()
            self._connection = None

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()

    def lock(self, keys: Iterable[str]) -> None:
        """Serialise work on the same keys (users, event ids) across processes until commit.

        PostgreSQL takes transaction-scoped advisory locks in a fixed order (no deadlock);
        SQLite needs nothing: BEGIN IMMEDIATE already admits one writer at a time.
        """
        if self._database.dialect != "postgresql":
            return
        assert self._connection is not None
        ids = sorted({zlib.crc32(key.encode()) for key in keys})
        if ids:
            self._connection.execute(_LOCK_IN_ORDER, {"ids": ids})


class ReadOnly:
    """A read transaction (a consistent snapshot on both backends) for the audit."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def __enter__(self) -> ReadOnly:
        self.connection = self._database.reader.connect()
        self.connection.begin()
        dialect = self._database.dialect
        self.events = EventRepository(self.connection, dialect)
        self.users = UserRepository(self.connection, dialect)
        self.outbox = OutboxRepository(self.connection, dialect)
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.rollback()
        self.connection.close()
