"""What the migration tests share: the CLI's message unwrapped, and what Alembic would
change to make a database match Herald's tables."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from herald.store.database import Database
from herald.store.tables import metadata


def one_line(text: str) -> str:
    return " ".join(text.split())


def schema_differences(database: Database) -> list[object]:
    """What Alembic's autogenerate would change to make the database match ``tables.py``."""
    with database.writer.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))
