"""SQLite's write-ahead log stays short under a steady write load.

Commits land while each background checkpoint runs, so a passive checkpoint never finds
the whole log copied; without the restart that follows it, the log grows by the whole
write rate until the disk is full.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

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


def test_checkpoints_that_keep_failing_log_one_traceback_then_a_line_now_and_then(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On a full disk each pass failed, once a second in each process, and logged its
    whole traceback each time: the log was buried in them."""
    path = tmp_path / "herald.db"
    path.write_bytes(b"not a database, as a checkpoint finds a file it cannot use" * 100)
    database = Database(f"sqlite:///{path}")
    checkpointer = Checkpointer(database, interval=0.02, say_failing_every_s=0.25)
    caplog.set_level(logging.INFO, logger="herald.store.checkpoints")

    checkpointer.start()
    time.sleep(0.6)  # some 30 passes, all failing
    path.write_bytes(b"")  # an empty file is an empty database: the next pass succeeds
    deadline = time.monotonic() + 5
    while "succeed again" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    checkpointer.stop()
    database.dispose()

    said = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert said[0][0] == logging.ERROR and said[0][1].startswith("WAL checkpoint failed")
    assert [record.exc_info is not None for record in caplog.records].count(True) == 1
    still = [message for _, message in said[1:-1]]
    assert 1 <= len(still) <= 4, said  # every 0.25 s, not every pass
    assert all(message.startswith("WAL checkpoints still failing (") for message in still)
    assert said[-1][0] == logging.INFO
    assert re.fullmatch(r"WAL checkpoints succeed again after \d+ failure\(s\)", said[-1][1])
    assert int(re.findall(r"\d+", said[-1][1])[0]) > 10
