"""SQLite's write-ahead log stays short under a steady write load.

Commits land while each background checkpoint runs, so a passive checkpoint never finds
the whole log copied; without the restart that follows it, the log grows by the whole
write rate until the disk is full.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from herald.store.checkpoints import Checkpointer
from herald.store.database import Database

ROW_BYTES = 8 * 1024  # two or three pages per commit, as a small group commit writes
WRITE_BYTES = 16 * 1024 * 1024
PAUSE_S = 0.0005  # between commits, as a group-commit writer reads its next requests


def _write_steadily(database: Database, stop: threading.Event, written: list[int]) -> None:
    payload = os.urandom(ROW_BYTES)
    while not stop.is_set() and written[0] < WRITE_BYTES:
        with database.writer.begin() as conn:
            conn.exec_driver_sql("INSERT INTO load (body) VALUES (?)", (payload,))
        written[0] += ROW_BYTES
        time.sleep(PAUSE_S)


def test_the_log_stays_a_fraction_of_what_is_written(tmp_path: Path) -> None:
    path = tmp_path / "load.db"
    database = Database(f"sqlite:///{path}")
    with database.writer.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE load (id INTEGER PRIMARY KEY, body BLOB)")
    checkpointer = Checkpointer(database, interval=0.02, restart_frames=256)
    stop, written = threading.Event(), [0]
    writer = threading.Thread(target=_write_steadily, args=(database, stop, written))
    checkpointer.start()
    writer.start()
    largest, wal = 0, Path(f"{path}-wal")
    while writer.is_alive():
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        time.sleep(0.01)
    checkpointer.stop()

    # 256 frames are 1 MiB; what is committed between two checkpoints comes on top.
    # With passive checkpoints alone, the log grew to twice what was written.
    assert largest < WRITE_BYTES / 4, f"the log reached {largest / 2**20:.0f} MiB"
    with database.reader.connect() as conn:
        count, total = conn.exec_driver_sql("SELECT count(*), sum(length(body)) FROM load").one()
    database.dispose()
    assert (count, total) == (WRITE_BYTES // ROW_BYTES, WRITE_BYTES)


def test_a_reader_holding_an_old_snapshot_does_not_stall_writers(tmp_path: Path) -> None:
    """A restart waits for readers of the old log with the write lock held. A reader that
    keeps a transaction open (an audit page, an analyst's shell) must not make every
    commit wait for it: the restart gives up soon and is tried again later."""
    path = tmp_path / "load.db"
    database = Database(f"sqlite:///{path}")
    with database.writer.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE load (id INTEGER PRIMARY KEY, body BLOB)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM load").fetchone()  # pins the log as it is now

    checkpointer = Checkpointer(database, interval=0.1, restart_frames=256)
    checkpointer.start()
    payload, slowest, started = os.urandom(ROW_BYTES), 0.0, time.monotonic()
    try:
        while time.monotonic() - started < 1.5:
            begun = time.monotonic()
            with database.writer.begin() as conn:
                conn.exec_driver_sql("INSERT INTO load (body) VALUES (?)", (payload,))
            slowest = max(slowest, time.monotonic() - begun)
            time.sleep(PAUSE_S)
    finally:
        checkpointer.stop()
        reader.close()
        database.dispose()
    # The restart's 200 ms, and the steps of SQLite's busy handler on both sides.
    assert slowest < 1.0, f"a commit waited {slowest:.2f} s for the checkpoint"
