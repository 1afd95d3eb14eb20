"""SQLite's connections: the pragmas each one opens with, BEGIN IMMEDIATE for writers,
and how long a connection waits for another's write lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from herald.store.sql import json_text

_WAL_KEEP_BYTES = 1024 * 1024 * 1024
SQLITE_BUSY_TIMEOUT_MS = 30_000
_BUSY_TIMEOUT = "busy_timeout_ms"  # key in a pooled connection's info
# The busy timeout a connection taken from the pool now gets: the usual, but around
# ``connect_without_waiting``'s own.
_patience_wanted: ContextVar[int] = ContextVar("sqlite_patience", default=SQLITE_BUSY_TIMEOUT_MS)


def sqlite_engine(
    url: URL,
    *,
    immediate: bool,
    synchronous: str,
    pool_size: int,
    on_connect: Callable[[], None],
) -> Engine:
    """An engine on the SQLite file of ``url``; ``immediate``: its transactions begin with
    BEGIN IMMEDIATE. ``on_connect`` runs after each new connection is configured."""
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
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
        cursor.execute(f"PRAGMA synchronous={synchronous}")
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
        # Deleted rows are overwritten with zeros, not left in the file's free space, where
        # a forgotten user's email would stay readable. Many builds (Debian's) do so by
        # default, and the benchmarks ran with it; others (SQLite's own default) do not.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()
        on_connect()

    @event.listens_for(engine, "checkout")
    def _give_patience(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A unit of work may stop waiting for the lock for its own duration only: whoever
        # takes the connection from the pool next gets the usual patience, unless it too
        # does not wait. Set as it is taken rather than restored as it is returned: the
        # event loop's writer, which does not wait, then sets nothing from one unit of
        # work to the next, where the two PRAGMAs cost 39,000 instructions, 3.9% of a
        # single event's ingestion.
        _set_patience(dbapi_connection, record.info, _patience_wanted.get())

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        if immediate:
            _begin_immediate(connection)
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


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
    if patience == 0 and _began_on_driver(connection):
        return
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


def _began_on_driver(connection: Connection) -> bool:
    """BEGIN IMMEDIATE on the driver's connection, for a writer that does not wait for the
    lock (the event loop's): through SQLAlchemy's statement machinery it cost about
    100,000 instructions, 9% of a single event's ingestion. False, having begun nothing,
    when it failed: the caller begins again through SQLAlchemy, which costs no wait (the
    lock is not waited for) and raises what it always raised (wrapped, a lost connection
    invalidated)."""
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        driver.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        return False
    return True


def file_identity(path: Path | None) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, or None when there is none."""
    try:
        status = path.stat() if path is not None else None
    except OSError:
        return None
    return None if status is None else (status.st_dev, status.st_ino)


def connect_without_waiting(engine: Engine) -> Connection:
    """A connection of ``engine``'s pool that fails with "database is locked" at once
    when another connection holds the write lock, until it goes back to the pool."""
    wanted = _patience_wanted.set(0)
    try:
        return engine.connect()
    finally:
        _patience_wanted.reset(wanted)


def set_busy_timeout(connection: Connection, milliseconds: int) -> None:
    """How long a SQLite connection waits for another connection's write lock before
    it fails with "database is locked" (0: it fails at once), until the connection goes
    back to the pool: whoever takes it next gets the usual patience."""
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
