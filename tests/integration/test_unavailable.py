"""Which database errors mean "cannot serve now, retry" (a 503) and which a statement that
is wrong whenever it runs (a bug: a 500 with its traceback); and the start-up check that
the database takes Herald's writes. Real errors from real databases."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from herald.store.database import Database, set_busy_timeout, unavailable, write_problem
from herald.store.migrate import upgrade
from tests.support.ports import free_port


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'h.db'}")
    upgrade(database)
    return database


def error_of(database: Database, statement: str, *, wait: bool = True) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught, database.writer.connect() as connection:
        if not wait:
            set_busy_timeout(connection, 0)
        connection.exec_driver_sql(statement)
    return caught.value


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection, as another process would, holds the file's write lock."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_locked_sqlite_database_is_unavailable_for_now(
    sqlite_database: Database, tmp_path: Path
) -> None:
    with write_lock_held(tmp_path / "h.db"):
        error = error_of(sqlite_database, "UPDATE users SET updated_us = 0", wait=False)

    assert "locked" in str(error.orig)
    assert unavailable(error)


def test_a_missing_column_is_a_bug_not_an_outage(sqlite_database: Database) -> None:
    assert not unavailable(error_of(sqlite_database, "SELECT no_such_column FROM users"))


def test_a_postgresql_that_refuses_connections_is_unavailable() -> None:
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/herald")
    with pytest.raises(DBAPIError) as caught:
        engine.connect()
    engine.dispose()

    assert unavailable(caught.value)


@pytest.mark.postgres
def test_a_missing_column_on_postgresql_is_a_bug_not_an_outage(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        assert not unavailable(error_of(database, "SELECT no_such_column FROM users"))
    finally:
        database.dispose()


# The start-up check that the database takes Herald's writes


def test_a_database_another_process_is_writing_to_is_not_called_read_only(
    sqlite_database: Database, tmp_path: Path
) -> None:
    with write_lock_held(tmp_path / "h.db"):
        assert write_problem(sqlite_database) is None


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("grants", "problem"),
    [
        # The migrations' own table read-only, as a role kept apart from migrations has it.
        ("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; "
         "REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {role}", None),
        ("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", "permission denied"),
    ],
    ids=["writes_herald_s_tables", "reads_only"],
)  # fmt: skip
def test_a_role_is_judged_by_the_tables_herald_writes(
    postgres_url: str, grants: str, problem: str | None
) -> None:
    role = f"herald_role_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        for grant in grants.format(role=role).split("; "):
            connection.exec_driver_sql(grant)
    database = Database(make_url(postgres_url).set(username=role).render_as_string(False))
    try:
        found = write_problem(database)
    finally:
        database.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
            connection.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()

    assert found is None if problem is None else problem in (found or "")
