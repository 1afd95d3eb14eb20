"""Engines for a database URL: SQLite (embedded, the default) or PostgreSQL (scale-out),
and whether the database takes Herald's writes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from herald.observability.logging import first_line
from herald.store.database_url import DatabaseUrlError, normalise_url
from herald.store.postgres_connections import postgres_engine
from herald.store.sqlite_connections import file_identity, set_busy_timeout, sqlite_engine

_POOL_SIZE = 8  # connections per engine, and as many more under a burst


class Database:
    """The engines Herald uses. On SQLite, writes go through a ``BEGIN IMMEDIATE``
    engine so that a writer waits for the lock at the start rather than failing to
    upgrade a read lock mid-transaction; reads use plain deferred transactions."""

    def __init__(
        self, raw_url: str, *, flush_each_commit: bool = False, statement_timeout_s: float = 0
    ) -> None:
        """``flush_each_commit`` (SQLite): wait at each commit until the disk has it, so
        that a power cut loses nothing committed either, not only a killed process.

        ``statement_timeout_s`` (PostgreSQL): how long a statement may run, waiting for
        locks included, before the server cancels it (0: no limit), unless the URL, the
        role, the database or the server's configuration sets a limit of its own."""
        self.url = normalise_url(raw_url)
        self._synchronous = "FULL" if flush_each_commit else "NORMAL"
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # SQLite creates its file at the first connection; the folder must exist, since
        # one created for a mistyped path would hide the mistake.
        self.sqlite_path: Path | None = None
        self._sqlite_file: tuple[int, int] | None = None  # its (device, inode), once opened
        if self.is_sqlite:
            path = Path(self.url.database or "herald.db")
            if not path.parent.is_dir():
                raise DatabaseUrlError(
                    f"the folder {path.parent.resolve()} of the SQLite database does not exist: "
                    "create it, or correct the path"
                )
            self.sqlite_path = path
            self.writer = self._sqlite_engine(immediate=True)
            self.reader = self._sqlite_engine(immediate=False)
        else:
            engine = postgres_engine(
                self.url,
                raw_url,
                pool_size=_POOL_SIZE,
                statement_timeout_s=statement_timeout_s,
            )
            self.writer = self.reader = engine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def _sqlite_engine(self, *, immediate: bool) -> Engine:
        return sqlite_engine(
            self.url,
            immediate=immediate,
            synchronous=self._synchronous,
            pool_size=_POOL_SIZE,
            on_connect=self._note_sqlite_file,
        )

    def _note_sqlite_file(self) -> None:
        if self._sqlite_file is None:  # the file the first connection opened (or created)
            self._sqlite_file = file_identity(self.sqlite_path)

    def sqlite_file_problem(self) -> str | None:
        """Why the SQLite file this process opened is no longer at its path, if it is not
        (deleted, moved away or replaced): the connections already open go on writing to
        it, so events are still acknowledged, but a restart would open the file now at
        the path, or create an empty one, without them. None on PostgreSQL."""
        if self.sqlite_path is None or self._sqlite_file is None:
            return None
        now = file_identity(self.sqlite_path)
        if now == self._sqlite_file:
            return None
        what = "is gone" if now is None else "is another file"
        return f"{self.sqlite_path.resolve()} {what}: not the SQLite file this process opened"

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def write_problem(database: Database) -> str | None:
    """Why ``database`` refuses Herald's writes (a read-only file or folder, a read-only
    replica, a role that may not write the outbox), or None. Tried in a transaction that
    is rolled back and changes nothing; a write lock held by another process means some
    process can write, so it is not waited for."""
    with database.writer.connect() as connection:
        if database.is_sqlite:
            set_busy_timeout(connection, 0)
        try:
            with connection.begin() as transaction:
                if database.is_sqlite:  # rewrites the header: refused by a read-only file
                    version = connection.exec_driver_sql("PRAGMA user_version").scalar()
                    connection.exec_driver_sql(f"PRAGMA user_version = {int(version or 0)}")
                else:  # checks the role's right to update the outbox, and read-only mode
                    connection.exec_driver_sql("UPDATE messages SET status = status WHERE false")
                transaction.rollback()
        except DBAPIError as exc:
            said = first_line(exc.orig if exc.orig is not None else exc)
            return None if "locked" in said else said
    return None
