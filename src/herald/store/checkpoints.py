"""Keeping SQLite's write-ahead log short: checkpoints on a thread of their own."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Connection

from herald.store.database import Database, set_busy_timeout

log = logging.getLogger(__name__)

_CATCH_UP_PASSES = 3
_CATCH_UP_FRAMES = 256
_RESTART_PATIENCE_MS = 200


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
        self, database: Database, interval: float = 1.0, *, restart_frames: int = 262_144
    ) -> None:
        self._database = database
        self._interval = interval
        self._restart_frames = restart_frames
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
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except Exception:
                log.exception("WAL checkpoint failed; retrying")


def _checkpoint(connection: Connection, mode: str) -> tuple[bool, int]:
    """Run a checkpoint; returns whether it could not finish, and how many frames the
    log held."""
    busy, log_frames, _copied = connection.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()
    return bool(busy), int(log_frames)
