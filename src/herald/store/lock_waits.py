"""Who holds the locks a PostgreSQL session waits for, told while it waits: an upgrade
stuck behind another session's lock (a shell left in a transaction) otherwise looks hung."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Row, text

from herald.store.database import Database

_EVERY_S = 5.0
_BLOCKERS = text(
    "SELECT pid, state, CAST(EXTRACT(EPOCH FROM now() - xact_start) AS integer) AS age, query "
    "FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids(:pid)) ORDER BY pid"
)


@contextmanager
def saying_who_blocks(database: Database, pid: int, say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, every 5 s that the PostgreSQL session ``pid`` waits for a lock,
    ``say`` which sessions hold it, and how to end the wait."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(_EVERY_S):
            try:
                with database.reader.connect() as connection:
                    holders = connection.execute(_BLOCKERS, {"pid": pid}).all()
            except Exception:  # a look that fails must not stop the upgrade
                continue
            if holders and not stop.is_set():
                say(_waiting_for(holders))

    watcher = threading.Thread(target=watch, name="herald-lock-waits", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(1.0)  # a look may wait on a slow server; Ctrl-C must not wait for it


def _waiting_for(holders: Sequence[Row[Any]]) -> str:
    sessions = "; ".join(
        f"session {row.pid} ({row.state or 'state unknown'}, in a transaction for "
        f"{row.age or 0} s, its latest statement: {' '.join((row.query or '').split())[:80]})"
        for row in holders
    )
    return (
        f"waiting for a lock held by {sessions}: the upgrade goes on once it is released "
        f"(end that session, e.g. SELECT pg_terminate_backend({holders[0].pid}), or press "
        "Ctrl-C to give up, changing nothing)"
    )
