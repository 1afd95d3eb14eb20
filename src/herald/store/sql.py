"""Plain SQL for the ingestion hot path.

SQLAlchemy Core builds and caches statements for us everywhere else; on the few
statements each ingested batch runs, its per-statement overhead (~90 us) was larger
than the work itself, so those go to the driver as text. JSON is serialised here.
"""

from __future__ import annotations

from typing import Any

import orjson


def marks(dialect: str, count: int) -> str:
    """``count`` positional placeholders in the driver's style (sqlite3: ?, psycopg: %s)."""
    mark = "?" if dialect == "sqlite" else "%s"
    return ", ".join([mark] * count)


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_value(stored: Any) -> Any:
    """A JSON column as read through the driver: text on SQLite, parsed on PostgreSQL."""
    return orjson.loads(stored) if isinstance(stored, str | bytes) else stored
