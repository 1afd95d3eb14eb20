"""Plain SQL for the ingestion hot path.

SQLAlchemy Core builds and caches statements for us everywhere else; on the few
statements each ingested batch runs, its per-statement overhead (~90 us) was larger
than the work itself, so those go to the driver as text, on the driver's own cursor
(SQLAlchemy's text path still cost about a tenth of staging a batch). JSON is
serialised here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

_CHUNK = 500  # keys per statement: below SQLite's bound-parameter limit


def marks(dialect: str, count: int) -> str:
    """``count`` positional placeholders in the driver's style (sqlite3: ?, psycopg: %s)."""
    mark = "?" if dialect == "sqlite" else "%s"
    return ", ".join([mark] * count)


def json_text(value: Any) -> str:
    """``value`` as JSON text, as every JSON column stores it (also SQLAlchemy's serialiser)."""
    return orjson.dumps(value).decode()


def json_value(stored: Any) -> Any:
    """A JSON column as read through the driver: text on SQLite, parsed on PostgreSQL."""
    return orjson.loads(stored) if isinstance(stored, str | bytes) else stored


@contextmanager
def _driver_cursor(connection: Connection, statement: str, params: Any) -> Iterator[Any]:
    """A cursor of the driver under ``connection`` (same transaction); the driver's errors
    come out as SQLAlchemy's, like those of every other statement."""
    dbapi = connection.dialect.loaded_dbapi
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, params, exc, dbapi.Error) from exc
    finally:
        cursor.close()


def fetch_all(connection: Connection, statement: str, params: Sequence[Any] = ()) -> list[Any]:
    """Rows of ``statement``, run by the driver itself."""
    with _driver_cursor(connection, statement, params) as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


def execute_many(connection: Connection, statement: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run ``statement`` once per row, by the driver itself; returns how many rows it
    changed in all."""
    with _driver_cursor(connection, statement, rows) as cursor:
        cursor.executemany(statement, rows)
        return int(cursor.rowcount)


def select_in(
    connection: Connection,
    dialect: str,
    query: str,
    keys: Iterable[str],
    *,
    prefix: tuple[Any, ...] = (),
) -> list[Any]:
    """Rows of ``query`` (a SELECT, or a statement with RETURNING; with ``IN ({})`` for
    the keys) for the distinct ``keys``, in as many statements as the driver's parameter
    limit needs; ``prefix`` holds the values of placeholders that come before the ``IN``
    list."""
    distinct = list(dict.fromkeys(keys))
    rows: list[Any] = []
    for start in range(0, len(distinct), _CHUNK):
        chunk = tuple(distinct[start : start + _CHUNK])
        statement = query.format(marks(dialect, len(chunk)))
        rows.extend(fetch_all(connection, statement, prefix + chunk))
    return rows
