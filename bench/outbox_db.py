"""Read a Herald SQLite database from the outside while a worker drains its outbox.

Every connection here is opened read-only (``mode=ro``), so the bench cannot change
what it measures; each query is its own short read, which WAL lets run beside the
worker's writes without blocking them. Times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REMAINING_SQL = "SELECT count(*) FROM messages WHERE status IN ('pending', 'sending')"


class DrainError(RuntimeError):
    """The outbox was not drained: the worker exited, or the timeout passed."""


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the SQLite file ``path``, closed on leaving the block."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield connection
    finally:
        connection.close()


def copy_database(source: Path, target: Path) -> None:
    """Copy a quiescent SQLite database consistently (WAL content included)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    copy = sqlite3.connect(target)
    try:
        with read_only(source) as original:
            original.backup(copy)
    finally:
        copy.close()


def status_counts(path: Path) -> dict[str, int]:
    """Messages per status, e.g. ``{"pending": 20000}``."""
    with read_only(path) as db:
        rows = db.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def sent_message_ids(path: Path) -> set[str]:
    """Ids of the messages with status ``sent``."""
    with read_only(path) as db:
        rows = db.execute("SELECT message_id FROM messages WHERE status = 'sent'").fetchall()
    return {str(row[0]) for row in rows}


def sent_span_rate(path: Path) -> float | None:
    """Messages/s from the database's own ``sent_us`` stamps: messages sent after the
    first stamp, divided by the time from the first stamp to the last. A cross-check on
    the polled figure that does not depend on the polling interval; None if undefined."""
    with read_only(path) as db:
        first, last = db.execute(
            "SELECT min(sent_us), max(sent_us) FROM messages WHERE status = 'sent'"
        ).fetchone()
        if first is None or last == first:
            return None
        (at_first,) = db.execute(
            "SELECT count(*) FROM messages WHERE status = 'sent' AND sent_us = ?", (first,)
        ).fetchone()
        (sent,) = db.execute("SELECT count(*) FROM messages WHERE status = 'sent'").fetchone()
    return (sent - at_first) / ((last - first) / 1e6)


@dataclass(frozen=True)
class Drain:
    """How a worker drained ``messages`` pending messages.

    ``wall_s`` runs from the worker's start to the last poll that found nothing pending
    or sending; ``first_progress_s`` to the first poll that found fewer than
    ``messages`` (start-up plus the first batch). ``window_messages`` are those that
    left the outbox between those two polls, in ``window_s`` seconds.
    """

    messages: int
    wall_s: float
    first_progress_s: float
    window_messages: int
    window_s: float
    polls: int

    @property
    def messages_per_s(self) -> float:
        """The steady drain rate, start-up excluded (falls back to the overall rate)."""
        if self.window_s > 0 and self.window_messages > 0:
            return self.window_messages / self.window_s
        return self.overall_per_s

    @property
    def overall_per_s(self) -> float:
        """Messages divided by ``wall_s``: the rate including the worker's start-up."""
        return self.messages / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "messages": self.messages,
            "messages_per_s": round(self.messages_per_s, 1),
            "overall_messages_per_s": round(self.overall_per_s, 1),
            "wall_s": round(self.wall_s, 3),
            "first_progress_s": round(self.first_progress_s, 3),
            "window_messages": self.window_messages,
            "window_s": round(self.window_s, 3),
            "polls": self.polls,
        }


def wait_drained(
    path: Path,
    process: subprocess.Popen[bytes],
    *,
    started: float,
    messages: int,
    timeout_s: float,
    poll_s: float = 0.05,
) -> Drain:
    """Poll ``path`` every ``poll_s`` s until no message is pending or sending.

    ``started`` is when ``process`` (the worker) was started. Raises ``DrainError`` if
    the process exits or ``timeout_s`` passes from ``started`` before then.
    """
    first: tuple[float, int] | None = None
    polls = 0
    with read_only(path) as db:
        while True:
            (remaining,) = db.execute(REMAINING_SQL).fetchone()
            now = time.perf_counter()
            polls += 1
            if first is None and remaining < messages:
                first = (now, remaining)
            if remaining == 0:
                break
            if process.poll() is not None:
                raise DrainError(f"worker exited with {process.returncode}, {remaining} left")
            if now - started > timeout_s:
                raise DrainError(f"{remaining} of {messages} left after {timeout_s:.0f} s")
            time.sleep(poll_s)
    assert first is not None  # remaining reached 0 < messages
    return Drain(
        messages=messages,
        wall_s=now - started,
        first_progress_s=first[0] - started,
        window_messages=first[1],
        window_s=now - first[0],
        polls=polls,
    )
