"""Plain SQL for the ingestion hot path.

SQLAlchemy Core builds and caches statements for us everywhere else; on the few
statements each ingested batch runs, its per-statement overhead (~90 us) was larger
than the work itself, so those go to the driver as text. JSON is serialised here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection

_CHUNK = 500  # keys per statement: below SQLite's bound-parameter limit


def marks(dialect: str, count: int) -> str:
    """``count`` positional placeholders in the driver's style (sqlite3: ?, psycopg: %s)."""
    mark = "?" if dialect == "sqlite" else "%s"
    return ", ".join([mark] * count)


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_value(stored: Any) -> Any:
    """A JSON column as read through the driver: text on SQLite, parsed on PostgreSQL."""
    return orjson.loads(stored) if isinstance(stored, str | bytes) else stored


def select_in(
    connection: Connection,
    dialect: str,
    query: str,
    keys: Iterable[str],
    *,
    prefix: tuple[Any, ...] = (),
) -> list[Any]:
    """Rows of ``query`` (with ``IN ({})`` for the keys) for the distinct ``keys``, in as
    many statements as the driver's parameter limit needs; ``prefix`` holds the values
    of placeholders that come before the ``IN`` list."""
    distinct = list(dict.fromkeys(keys))
    rows: list[Any] = []
    for start in range(0, len(distinct), _CHUNK):
        chunk = tuple(distinct[start : start + _CHUNK])
        statement = query.format(marks(dialect, len(chunk)))
        rows.extend(connection.exec_driver_sql(statement, prefix + chunk))
    return rows
