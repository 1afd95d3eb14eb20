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


def readiness(database: Database) -> Readiness:
    """Ready when the database answers, its schema is current and, on SQLite, the file at
    the database's path is still the one this process writes to."""
    try:
        with database.reader.connect() as connection:
            connection.execute(text("SELECT 1"))
        revision = current_revision(database)
    except Exception as exc:
        # The error's type alone: /readyz asks for no token, and the database's own
        # message names its host and port.
        return Readiness(False, {"database": f"unreachable: {type(exc).__name__}"})
    gone = database.sqlite_file_problem()
    if gone is not None:
        return Readiness(False, {"database": gone})
    head = head_revision()
    if revision != head:
        return Readiness(False, {"schema": f"at {revision}, need {head}"})
    return Readiness(True, {"schema": head})
