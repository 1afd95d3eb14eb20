"""Keeping SQLite's write-ahead log short: checkpoints on a thread of their own."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Connection

from herald.observability.logging import first_line
from herald.store.database import Database
from herald.store.sqlite_connections import set_busy_timeout

log = logging.getLogger(__name__)

_CATCH_UP_PASSES = 3
_CATCH_UP_FRAMES = 256
_RESTART_PATIENCE_MS = 200
_EMPTYING_TRIES = 5


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file every ``interval`` seconds
    on a thread of its own (the fsync releases the GIL, so ingestion keeps going).

    A passive checkpoint blocks no one, but alone it cannot keep the log short under a
    steady load: SQLite starts the log over only when a new write finds every frame
    already copied, and by the time a passive pass ends, new commits have landed. The
    log would grow by the whole write rate (about 90 MB/s under the benchmark) until the
    disk is full. So once the log holds more than ``restart_frames``, a RESTART
    checkpoint follows the passive one: it takes the write lock, copies only the frames
    committed since, and lets the next commit write from the start of the log again.
    Writers wait for that short copy, not for the whole log."""

    def __init__(
        self,
        database: Database,
        interval: float = 1.0,
        *,
        restart_frames: int = 262_144,
        say_failing_every_s: float = 60.0,
    ) -> None:
        """``say_failing_every_s``: while checkpoints keep failing (a full disk), how
        often a line says so after the first failure's traceback."""
        self._database = database
        self._interval = interval
        self._restart_frames = restart_frames
        self._say_failing_every_s = say_failing_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._database.is_sqlite:
            self._thread = threading.Thread(target=self._run, name="herald-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._database.is_sqlite:
            self.checkpoint()

    def checkpoint(self) -> None:
        """One pass: copy the log into the database file, and restart the log when it has
        grown past ``restart_frames`` (giving up soon if a reader is in the way)."""
        with self._database.reader.connect() as connection:
            _, frames = _checkpoint(connection, "PASSIVE")
            if frames <= self._restart_frames:
                return
            # Catch up, still without the lock, with what was committed during that
            # pass (on a large file a pass takes a while), so that the restart has
            # little to copy and flush while writers wait.
            for _ in range(_CATCH_UP_PASSES):
                previous, (_, frames) = frames, _checkpoint(connection, "PASSIVE")
                if frames - previous <= _CATCH_UP_FRAMES:
                    break
            started = time.perf_counter()
            # A restart waits with the write lock held for readers still on the old log.
            # One that stays (a long read, a shell left in a transaction) would hold up
            # every commit for the whole busy timeout: give up soon, try at the next pass.
            set_busy_timeout(connection, _RESTART_PATIENCE_MS)  # until back in the pool
            busy, _ = _checkpoint(connection, "RESTART")
            log.debug(
                "write-ahead log of %d frames %s after %.1f ms",
                frames,
                "not restarted (a reader or writer was in the way)" if busy else "restarted",
                (time.perf_counter() - started) * 1000,
            )

    def _run(self) -> None:
        # A failure that lasts (a full disk) fails every pass, each second, in every
        # process: its traceback each time buried the log. The first one's, then a line
        # now and then counting them, and one when checkpoints succeed again.
        failures = 0
        said_at = 0.0
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except Exception as exc:
                failures += 1
                now = time.monotonic()
                if failures == 1:
                    log.exception(
                        "WAL checkpoint failed; retrying every %g s, saying so every %g s",
                        self._interval,
                        self._say_failing_every_s,
                    )
                    said_at = now
                elif now - said_at >= self._say_failing_every_s:
                    log.error(
                        "WAL checkpoints still failing (%d in a row): %s",
                        failures,
                        first_line(exc),
                    )
                    said_at = now
            else:
                if failures:
                    log.info("WAL checkpoints succeed again after %d failure(s)", failures)
                failures = 0


def empty_write_ahead_log(database: Database) -> bool:
    """Copy SQLite's write-ahead log into the database file and cut the log to nothing,
    so that the -wal file keeps no earlier version of a page: a log once copied is not
    emptied but written over from its start, and on a quiet server the frames of rows
    since deleted (a forgotten user's) stayed in it for weeks. True once done, and on
    PostgreSQL, which has no such file; False when readers stayed in the way through
    ``_EMPTYING_TRIES`` attempts, each holding writers back for at most ``_RESTART_PATIENCE_MS``."""
    if not database.is_sqlite:
        return True
    for attempt in range(_EMPTYING_TRIES):
        if attempt:
            time.sleep(0.1)  # writers go on meanwhile
        with database.reader.connect() as connection:
            set_busy_timeout(connection, _RESTART_PATIENCE_MS)  # until back in the pool
            busy, _ = _checkpoint(connection, "TRUNCATE")
        if not busy:
            return True
    return False


def _checkpoint(connection: Connection, mode: str) -> tuple[bool, int]:
    """Run a checkpoint; returns whether it could not finish, and how many frames the
    log held."""
    busy, log_frames, _copied = connection.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()
    return bool(busy), int(log_frames)
