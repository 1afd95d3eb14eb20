"""Engines for a database URL: SQLite (embedded, the default) or PostgreSQL (scale-out)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from herald.observability.logging import first_line
from herald.observability.masking import hide_url_passwords
from herald.store.sql import json_text

_WAL_KEEP_BYTES = 1024 * 1024 * 1024
SQLITE_BUSY_TIMEOUT_MS = 30_000
_POOL_SIZE = 8  # connections per engine, and as many more under a burst
# How long a new PostgreSQL connection may take (unless the URL says connect_timeout):
# libpq's default waits for ever on a server or host that never answers.
PG_CONNECT_TIMEOUT_S = 10
# libpq's settings, each where the URL gives none. Past connecting, a server that stops
# answering (its host gone, the network cut) would hold a request, and the pooled
# connection it runs on, until the system's own TCP retries give up, some 15 minutes:
# data unacknowledged for 30 s, or an idle connection unanswered for 10 + 3 x 5 s,
# ends the connection instead, and the request answers 503.
PG_CONNECTION_DEFAULTS = {
    "connect_timeout": PG_CONNECT_TIMEOUT_S,
    "tcp_user_timeout": 30_000,  # milliseconds
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
_BUSY_TIMEOUT = "busy_timeout_ms"  # key in a pooled connection's info


_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=)[^&\s]*")


class DatabaseUrlError(ValueError):
    pass


def hide_password(raw: str) -> str:
    """The database URL ``raw`` as a person may see it: its password, if any, is ``***``."""
    try:
        shown = make_url(raw).render_as_string(hide_password=True)
    except Exception:
        shown = raw  # not a URL SQLAlchemy reads: what looks like a password still goes
    # SQLAlchemy ends a password at its first "@": one typed with an "@" goes whole.
    # libpq also takes the password as a parameter, which SQLAlchemy shows as it is.
    return _QUERY_PASSWORD.sub("***", hide_url_passwords(shown))


def shown_url(raw: str) -> str:
    """The database URL ``raw`` as an operator's line names it: its password hidden (see
    ``hide_password``), and an SQLite file's relative path made absolute, as the process
    opens it from its working folder: ``sqlite:///./herald.db`` in a log read later, or
    from another folder, would not say which file it was."""
    try:
        url = make_url(raw)
    except Exception:  # refused where it is opened, with its own message
        return hide_password(raw)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        if not path.is_absolute():
            raw = url.set(database=str(path.resolve())).render_as_string(hide_password=False)
    return hide_password(raw)


def normalise_url(raw: str) -> URL:
    """Accept ``sqlite:///file.db`` and ``postgresql://...`` (psycopg 3 is the driver), or
    ``postgres://...`` as many hosts hand PostgreSQL's URLs out."""
    try:
        url = make_url(raw)
    except Exception as exc:
        # Some SQLAlchemy versions quote the whole URL in their message.
        reason = str(exc).replace(raw, hide_password(raw))
        raise DatabaseUrlError(f"not a database URL: {hide_password(raw)!r} ({reason})") from None
    if url.drivername == "postgres":
        url = url.set(drivername="postgresql")
    if url.get_backend_name() == "postgresql":
        # A password's first "@" ends it, and the rest would be looked up as the host:
        # libpq's "failed to resolve host" error would then show the rest of the password.
        if url.host is not None and "@" in url.host:
            raise DatabaseUrlError(
                f"the database URL {hide_password(raw)!r} holds an '@' in its password: "
                "write each '@' of the password as %40 (and each '%' as %25)"
            )
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        if url.host or url.username or url.password or url.port:
            # Two slashes, `sqlite://./herald.db`: the path's start is read as a host,
            # which SQLite has none of (SQLAlchemy refused it with a traceback).
            raise DatabaseUrlError(
                f"not an SQLite URL: {hide_password(raw)!r}: SQLite has no host, so its URL "
                "has three slashes before a relative path (sqlite:///./herald.db) and four "
                "before an absolute one (sqlite:////srv/herald/herald.db)"
            )
        if not url.database or url.database == ":memory:":
            raise DatabaseUrlError(
                "an in-memory SQLite database would lose every event; use a file, "
                "e.g. sqlite:///./herald.db"
            )
        return url
    raise DatabaseUrlError(
        f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql"
    )


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
            given = self.url.query
            try:
                engine = create_engine(
                    self.url,
                    pool_size=_POOL_SIZE,
                    max_overflow=_POOL_SIZE,
                    pool_pre_ping=True,
                    json_serializer=json_text,
                    json_deserializer=orjson.loads,
                    connect_args={
                        k: v for k, v in PG_CONNECTION_DEFAULTS.items() if k not in given
                    },
                )
            except ArgumentError as exc:  # parameters SQLAlchemy reads itself: ?port=x
                raise DatabaseUrlError(
                    f"not a database URL: {hide_password(raw_url)!r} ({first_line(exc)})"
                ) from None
            if statement_timeout_s:
                _limit_statements(engine, statement_timeout_s)
            self.writer = self.reader = engine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def _sqlite_engine(self, *, immediate: bool) -> Engine:
        engine = create_engine(
            self.url,
            pool_size=_POOL_SIZE,
            max_overflow=_POOL_SIZE,
            json_serializer=json_text,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, record: Any) -> None:
            # Let SQLAlchemy's "begin" event below issue BEGIN itself.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # WAL + synchronous=NORMAL: a committed transaction survives a killed process
            # (only a power loss can take the last ones); writers don't block readers.
            # FULL also flushes the log to disk at each commit, against power loss.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={self._synchronous}")
            _set_patience(dbapi_connection, record.info, SQLITE_BUSY_TIMEOUT_MS)
            # A page cache and memory map large enough for the indexes' upper levels:
            # the cost per event then stays flat as the history grows.
            cursor.execute("PRAGMA cache_size=-65536")  # KiB: 64 MiB per connection
            cursor.execute("PRAGMA mmap_size=1073741824")
            # Checkpoints run on a background thread (``Checkpointer``), not inside a
            # request's commit, where their fsync would stall the event loop.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            # When the log starts over, a file grown past this under a burst is cut back.
            cursor.execute(f"PRAGMA journal_size_limit={_WAL_KEEP_BYTES}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            if self._sqlite_file is None:  # the file the first connection opened (or created)
                self._sqlite_file = _file_identity(self.sqlite_path)

        @event.listens_for(engine, "checkin")
        def _restore_patience(dbapi_connection: Any, record: Any) -> None:
            # A unit of work may stop waiting for the lock for its own duration only:
            # whoever takes the connection from the pool next gets the usual patience.
            if dbapi_connection is not None:
                _set_patience(dbapi_connection, record.info, SQLITE_BUSY_TIMEOUT_MS)

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            if immediate:
                _begin_immediate(connection)
            else:
                connection.exec_driver_sql("BEGIN")

        return engine

    def sqlite_file_problem(self) -> str | None:
        """Why the SQLite file this process opened is no longer at its path, if it is not
        (deleted, moved away or replaced): the connections already open go on writing to
        it, so events are still acknowledged, but a restart would open the file now at
        the path, or create an empty one, without them. None on PostgreSQL."""
        if self.sqlite_path is None or self._sqlite_file is None:
            return None
        now = _file_identity(self.sqlite_path)
        if now == self._sqlite_file:
            return None
        what = "is gone" if now is None else "is another file"
        return f"{self.sqlite_path.resolve()} {what}: not the SQLite file this process opened"

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


# How long the main thread waits for SQLite's write lock at a time before Python may act
# on a signal (Ctrl-C), and waits again.
_LOCK_WAIT_SLICE_MS = 100


def _begin_immediate(connection: Connection) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock up to the connection's busy timeout. On
    the main thread, the wait goes in slices: SQLite sleeps in its busy handler without
    returning to Python, which acts on a signal only between them, so Ctrl-C on a
    command waiting for a lock another process held (a prune, a shell left in a write
    transaction) took the whole 30 s to act."""
    patience = connection.info.get(_BUSY_TIMEOUT, SQLITE_BUSY_TIMEOUT_MS)
    if patience <= _LOCK_WAIT_SLICE_MS or threading.current_thread() is not threading.main_thread():
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    deadline = time.monotonic() + patience / 1000
    set_busy_timeout(connection, _LOCK_WAIT_SLICE_MS)
    try:
        while True:
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                    raise
    finally:
        set_busy_timeout(connection, patience)


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, or None when there is none."""
    try:
        status = path.stat() if path is not None else None
    except OSError:
        return None
    return None if status is None else (status.st_dev, status.st_ino)


# Set on a new connection only where nothing else did (the URL's options, PGOPTIONS, the
# role, the database, the server's configuration): a limit the operator chose, even 0, wins.
_STATEMENT_TIMEOUT_UNLESS_SET = (
    "SELECT set_config('statement_timeout', %s, false) FROM pg_settings "
    "WHERE name = 'statement_timeout' AND source = 'default'"
)


def _limit_statements(engine: Engine, seconds: float) -> None:
    """Let PostgreSQL cancel a statement of ``engine``'s that runs over ``seconds``: it
    fails with SQLSTATE 57014, which ``unavailable`` reads as "cannot serve now"."""
    milliseconds = str(max(1, round(seconds * 1000)))

    @event.listens_for(engine, "connect")
    def _set_statement_timeout(dbapi_connection: Any, _record: Any) -> None:
        # In autocommit, so that the setting holds for the session without leaving a
        # transaction open on a connection that is about to enter the pool.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(_STATEMENT_TIMEOUT_UNLESS_SET, (milliseconds,))
        finally:
            dbapi_connection.autocommit = autocommit


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


# SQLSTATE classes of an unavailable PostgreSQL: connection exception, insufficient
# resources, operator intervention (a shutdown, a restart, a statement cancelled by the
# statement timeout).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")
# What SQLite says when it cannot write now, rather than of a statement that is wrong.
_SQLITE_UNAVAILABLE = ("locked", "busy", "readonly", "disk i/o", "disk is full", "unable to open")


def database_said(exc: BaseException) -> str:
    """The first line of what the driver said under SQLAlchemy's wrapping of ``exc``."""
    return first_line(getattr(exc, "orig", None) or exc)


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot serve now (down, unreachable, locked,
    read-only, out of room, every pooled connection busy for the pool's whole timeout),
    as opposed to a statement that is wrong whenever it runs."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:
        return str(sqlstate)[:2] in _UNAVAILABLE_SQLSTATES
    said = str(exc.orig).lower()
    # psycopg raises a connection failure with no SQLSTATE: the server never answered.
    return "connection" in said or any(word in said for word in _SQLITE_UNAVAILABLE)


def set_busy_timeout(connection: Connection, milliseconds: int) -> None:
    """How long a SQLite connection waits for another connection's write lock before
    it fails with "database is locked" (0: it fails at once), until the connection goes
    back to the pool, which restores the usual patience."""
    # On the driver's connection: through SQLAlchemy, the statement would begin a
    # transaction, and so wait for the lock it is about to stop waiting for.
    driver = connection.connection.driver_connection
    assert driver is not None
    _set_patience(driver, connection.info, milliseconds)


def _set_patience(driver: Any, info: dict[Any, Any], milliseconds: int) -> None:
    """Set a driver connection's busy timeout; ``info`` (the pooled connection's) remembers
    it, so that a connection already set costs no statement."""
    if info.get(_BUSY_TIMEOUT) != milliseconds:
        driver.execute(f"PRAGMA busy_timeout={int(milliseconds)}")
        info[_BUSY_TIMEOUT] = milliseconds
