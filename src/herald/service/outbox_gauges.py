"""What the outbox gauges show on each scrape of the metrics."""

from __future__ import annotations

from datetime import datetime

from herald.domain.timeutil import to_micros
from herald.store.database import Database
from herald.store.message_status import OPEN
from herald.store.unit_of_work import ReadOnly


class DatabaseFileGone(Exception):
    """The SQLite file this process opened is no longer at the database's path."""


def outbox_snapshot(database: Database, *, now: datetime) -> tuple[dict[str, int], int, float]:
    """Messages by open status, the messages waiting to be sent, and how long, in seconds,
    the oldest one due at ``now`` has waited. Raises ``DatabaseFileGone`` when the SQLite
    file at the database's path is not the one this process reads: what it would show is
    of a database a restart would not find, and a dispatcher, which has no /readyz, says
    so only through herald_database_up."""
    gone = database.sqlite_file_problem()
    if gone is not None:
        raise DatabaseFileGone(gone)
    with ReadOnly(database) as read:
        # Every status at 0 when no message has it: a series that vanished instead (the
        # last dead letter re-queued) would leave a graph at its last count.
        by_status = dict.fromkeys(OPEN, 0) | read.outbox.count_by_status(open_only=True)
        backlog, age_us = read.outbox.backlog(to_micros(now))
    return by_status, backlog, (age_us or 0) / 1e6
