"""Whether a process's database can serve it: what /readyz answers."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text

from herald.store.database import Database
from herald.store.migrate import current_revision, head_revision


class Readiness(NamedTuple):
    ready: bool
    # What is wrong, by part ("database" or "schema"); when ready, the schema's revision.
    said: dict[str, str]
    # The database's error, for the log alone: its words name its host and port.
    error: Exception | None = None


def readiness(database: Database, *, locked_out: bool = False) -> Readiness:
    """Ready when the database answers and takes writes, its schema is current and, on
    SQLite, the file at the database's path is still the one this process writes to.
    ``locked_out``: this process's ingestion lately gave up waiting, for another
    process's write lock (SQLite's one writer) or past PostgreSQL's statement timeout, and
    no write has succeeded since."""
    try:
        with database.reader.connect() as connection:
            if database.is_sqlite:
                connection.execute(text("SELECT 1"))
                read_only = False
            else:
                # A standby, or a server set read-only, answers reads and refuses every
                # event: ready, the process would be sent requests it can only answer 503.
                shown = connection.execute(text("SHOW transaction_read_only")).scalar()
                read_only = shown == "on"
                if read_only:
                    # A session keeps the default it started with: replaced, so that a
                    # probe after the database takes writes again finds it does. Kept,
                    # the sessions made meanwhile said read-only for ever, and a process
                    # not ready got no event that would have replaced them.
                    connection.invalidate()
        revision = current_revision(database)
    except Exception as exc:
        # The error's type alone: /readyz asks for no token, and the database's own
        # message names its host and port.
        return Readiness(False, {"database": f"unreachable: {type(exc).__name__}"}, exc)
    if read_only:
        return Readiness(
            False, {"database": "read-only: a standby, or a server set read-only, takes no events"}
        )
    gone = database.sqlite_file_problem()
    if gone is not None:
        return Readiness(False, {"database": gone})
    if locked_out:
        # Reads still answer; every event waits for the lock and is then answered 503.
        said = _LOCKED_OUT if database.is_sqlite else _GAVE_UP_WAITING
        return Readiness(False, {"database": said})
    head = head_revision()
    if revision != head:
        return Readiness(False, {"schema": f"at {revision}, need {head}"})
    return Readiness(True, {"schema": head})


_LOCKED_OUT = (
    "locked by another process: events waited for its write lock and were refused (a "
    "herald worker or prune, a checkpoint, a shell left in a write transaction)"
)
_GAVE_UP_WAITING = (
    "events waited the statement timeout and were refused: a lock held on Herald's tables "
    "(LOCK TABLE, a migration, a session left in a transaction), or a server too busy to "
    "answer"
)
