"""Schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from herald.store.database import Database

_SCRIPTS = Path(__file__).parent / "migrations"


class SchemaOutdated(RuntimeError):
    pass


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    # The reader: a readiness probe must not queue behind the writer's lock.
    with database.reader.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(
    database: Database, progress: Callable[[str], None] | None = None, *, to: str = "head"
) -> None:
    """Bring the schema to the newest revision, or to ``to`` (a no-op when it is there);
    ``progress`` hears of each revision applied, with how long it took (an index on a
    large table can take minutes)."""
    config = _config()
    started = [time.monotonic()]

    def applied(*, step: Any, **_alembic: Any) -> None:  # called with keywords
        now = time.monotonic()
        if progress is not None:
            doc = (step.up_revision.doc or "").strip().splitlines()[0]
            progress(f"{step.up_revision_id}: {doc} ({now - started[0]:.1f} s)")
        started[0] = now

    with database.writer.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["on_version_apply"] = applied
        command.upgrade(config, to)


def ensure_current(
    database: Database, *, auto_upgrade: bool, progress: Callable[[str], None] | None = None
) -> None:
    """Upgrade an embedded database; refuse a shared one whose schema is behind."""
    current = current_revision(database)
    if current == head_revision():
        return
    if auto_upgrade:
        upgrade(database, progress)
        return
    raise SchemaOutdated(
        f"the database schema is at {current or 'nothing (empty database)'}, Herald needs "
        f"{head_revision()}: run `herald db upgrade --database URL` first"
    )
