"""Schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect

from herald.store.database import Database
from herald.store.lock_waits import saying_who_blocks

_SCRIPTS = Path(__file__).parent / "migrations"
# The advisory lock of schema upgrades on PostgreSQL: a negative key, apart from the
# CRC-32s of users and event ids that units of work lock (unit_of_work.py).
_UPGRADE_LOCK = -1


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this Herald runs on; the message says what to do."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    # The reader: a readiness probe must not queue behind the writer's lock.
    with database.reader.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def herald_revision(database: Database) -> str | None:
    """The schema revision ``database`` is at, None for an empty one; raises
    ``SchemaMismatch`` for an SQLite file of another program (tables, but no revision),
    which is no empty database to upgrade: ``upgrade`` refuses to add Herald's tables."""
    current = current_revision(database)
    if current is None and database.is_sqlite:
        _refuse_a_file_of_another_program(database)
    return current


def pending_steps(current: str | None) -> list[str]:
    """The revisions from ``current`` to the newest, oldest first, each with what it does.
    Raises ``SchemaMismatch`` when ``current`` is no revision this Herald knows: the
    database was written by a newer version (or by something else)."""
    try:
        steps = list(_scripts().iterate_revisions(head_revision(), current))
    except (CommandError, RevisionError):
        # Herald numbers its revisions; another program's Alembic names them with hashes.
        # Told "a newer Herald" about the revision of an application whose database it was
        # pointed at, an operator would go looking for a version that does not exist.
        if current is not None and not current.isdigit():
            raise SchemaMismatch(
                f"the database schema is at {current}, which is not one of Herald's "
                "revisions: the database holds another program's schema; give Herald a "
                "database of its own"
            ) from None
        raise SchemaMismatch(
            f"the database schema is at {current}, which this Herald does not know (its "
            f"newest is {head_revision()}): it was written by a newer Herald; run that one"
        ) from None
    return [f"{step.revision}: {_summary(step)}" for step in reversed(steps)]


def _summary(step: Script) -> str:
    """The first line of the revision's docstring, as a phrase of the operator's line (its
    full stop dropped: the line lists revisions, and gives each one's time after it)."""
    return (step.doc or "").strip().splitlines()[0].removesuffix(".")


def upgrade(
    database: Database, progress: Callable[[str], None] | None = None, *, to: str = "head"
) -> str | None:
    """Bring the schema to the newest revision, or to ``to`` (a no-op when it is there);
    ``progress`` hears which revisions are to be applied, then of each one applied, with
    how long it took (rebuilding a large table can take minutes). Returns the revision
    it started from (None: an empty database), read once its turn came."""
    say = progress or (lambda _line: None)
    config = _config()
    started = time.monotonic()

    def applied(*, step: Any, **_alembic: Any) -> None:  # called with keywords
        nonlocal started
        now = time.monotonic()
        say(f"applied {step.up_revision_id}: {_summary(step.up_revision)} ({now - started:.1f} s)")
        started = now

    try:
        with database.writer.begin() as connection, _watched(database, connection, say):
            _wait_for_other_upgrades(connection)
            # Read once the turn is ours: an upgrade that went first may have done it all.
            current = current_revision(database)
            if current is None and database.is_sqlite:
                _refuse_a_file_of_another_program(database)
            steps = pending_steps(current)
            if to == "head" and steps:
                say(f"applying {len(steps)} revision(s): {'; '.join(steps)}")
            started = time.monotonic()
            config.attributes["connection"] = connection
            config.attributes["on_version_apply"] = applied
            command.upgrade(config, to)
    except Exception as exc:
        # Ctrl-C in a statement makes SQLAlchemy drop the connection; Alembic's batch mode
        # (SQLite) then cleans up its copy of the table on that dropped connection, and the
        # error that fails with hides the interrupt. The transaction is rolled back either way.
        if _interrupted(exc):
            raise KeyboardInterrupt from exc
        raise
    return current


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt was being handled."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@contextmanager
def _watched(
    database: Database, connection: Connection, say: Callable[[str], None]
) -> Iterator[None]:
    """On PostgreSQL, say every few seconds while the upgrade waits for a lock, and who
    holds it: a revision's ALTER TABLE waits for every transaction that read the table."""
    if connection.dialect.name != "postgresql":
        yield
        return
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    with saying_who_blocks(database, pid, say):
        yield


def _wait_for_other_upgrades(connection: Connection) -> None:
    """Take turns with upgrades of the same database in other processes (each replica
    running `herald db upgrade` as it starts), until this transaction ends: run at once,
    both created the tables of an empty PostgreSQL database and the second failed.
    SQLite's ``BEGIN IMMEDIATE`` already admits one writer at a time."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")


def _refuse_a_file_of_another_program(database: Database) -> None:
    """An SQLite file with tables but no schema version is not Herald's (a mistyped path,
    an application's own database): Herald's tables are not added to it."""
    with database.reader.connect() as connection:
        tables = sorted(inspect(connection).get_table_names())
    if tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise SchemaMismatch(
            f"{database.sqlite_path} holds tables that are not Herald's ({shown}): Herald "
            "keeps a database of its own; name a new file"
        )


def ensure_current(
    database: Database, *, auto_upgrade: bool, progress: Callable[[str], None] | None = None
) -> None:
    """Return when the schema is current. One behind is upgraded with ``auto_upgrade``
    (callers set it for SQLite), else refused; one newer than this Herald is always
    refused. Refusals raise ``SchemaMismatch``."""
    current = herald_revision(database)
    if current == head_revision():
        return
    pending_steps(current)  # raises for a schema this Herald does not know
    if auto_upgrade:
        upgrade(database, progress)
        return
    at = f"at {current}" if current else "not there yet (an empty database)"
    raise SchemaMismatch(
        f"the database schema is {at}, Herald needs {head_revision()}: run `herald db "
        "upgrade --database URL` first"
    )
