"""Which database errors mean "cannot serve now, retry" (a 503) and which a statement that
is wrong whenever it runs (a bug: a 500 with its traceback); the start-up check that the
database takes Herald's writes; and the statement timeout that keeps a lock held on
PostgreSQL from holding a request for ever. Real errors from real databases."""

from __future__ import annotations

import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from herald.store.database import Database, write_problem
from herald.store.database_errors import unavailable
from herald.store.database_url import hide_password
from herald.store.migrate import head_revision, upgrade
from herald.store.sqlite_connections import set_busy_timeout
from tests.support.events import signup_payload
from tests.support.ports import free_port
from tests.support.postgres_locks import libpq_url, tables_locked
from tests.support.processes import (
    HeraldProcess,
    herald_command,
    herald_environment,
    scratch_postgres_database,
    wait_for,
)


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


# The statement timeout of the service on PostgreSQL


def lock_waiters(url: str) -> int:
    """How many sessions on the database of ``url`` wait for a lock."""
    with psycopg.connect(libpq_url(url)) as observer:
        row = observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (make_url(url).database,),
        ).fetchone()
    return int(row[0]) if row else 0


def migrated(url: str) -> str:
    database = Database(url)
    upgrade(database)
    database.dispose()
    return url


@pytest.mark.postgres
def test_a_statement_waiting_for_a_lock_is_cancelled_after_the_statement_timeout(
    postgres_url: str,
) -> None:
    database = Database(postgres_url, statement_timeout_s=0.5)
    try:
        with tables_locked(postgres_url, "users"):
            started = time.monotonic()
            error = error_of(database, "SELECT count(*) FROM users")
            took = time.monotonic() - started
    finally:
        database.dispose()

    assert "canceling statement due to statement timeout" in str(error.orig)
    assert unavailable(error)  # a 503 with a Retry-After; the dispatcher tries again
    assert 0.5 <= took < 5


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("options", "limit"),
    [
        (None, "1500ms"),
        ("-c statement_timeout=250", "250ms"),
        ("-c statement_timeout=0", "0"),  # the operator's "no limit" too
        ("-c search_path=public", "1500ms"),  # other options of the URL leave it to Herald
    ],
    ids=["unset", "a_limit", "no_limit", "other_options"],
)
def test_a_statement_timeout_the_database_url_sets_is_kept(
    postgres_url: str, options: str | None, limit: str
) -> None:
    url = make_url(postgres_url)
    if options is not None:
        url = url.update_query_dict({"options": options})
    database = Database(url.render_as_string(hide_password=False), statement_timeout_s=1.5)
    try:
        with database.reader.connect() as connection:
            found = connection.exec_driver_sql("SHOW statement_timeout").scalar()
    finally:
        database.dispose()

    assert found == limit


@pytest.mark.postgres
def test_a_request_held_up_by_a_lock_answers_503_after_the_statement_timeout(
    postgres_url: str, tmp_path: Path
) -> None:
    """A table locked by another client: without a statement timeout, the request (and the
    dispatcher's round, and their connections) waited for as long as the lock was held.
    With one, the request answers 503 with a Retry-After, and delivery resumes."""
    outbox = tmp_path / "outbox.jsonl"
    env = herald_environment(HERALD_POSTGRES_STATEMENT_TIMEOUT="1", HERALD_OUTBOX_FILE=str(outbox))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        scratch_postgres_database(postgres_url) as url,
        HeraldProcess("serve", log_dir=tmp_path) as server,
    ):
        server.start(
            ["serve", "--port", str(port), "--database", migrated(url)], env=env, cwd=tmp_path
        )
        server.wait_healthy(base + "/readyz")
        server.wait_for_output(f"on {hide_password(url)}")  # the dispatcher's first line
        with tables_locked(url, "users", "events", "messages"):
            started = time.monotonic()
            event = httpx.post(base + "/events", json=signup_payload("u_1"), timeout=15)
            took = time.monotonic() - started
            audit = httpx.get(base + "/audit/u_1", timeout=15)
            server.wait_for_output("dispatch round failed")
        stored = httpx.post(base + "/events", json=signup_payload("u_2"), timeout=15)
        wait_for(
            lambda: outbox.exists() and "u_2@example.com" in outbox.read_text(),
            "delivery",
            timeout=30,
        )
        said = server.output()

    assert (event.status_code, event.headers.get("retry-after")) == (503, "5")
    assert 1 <= took < 10
    assert (audit.status_code, audit.headers.get("retry-after")) == (503, "5")
    assert "canceling statement due to statement timeout" in said
    assert stored.status_code == 202
    assert "dispatch rounds succeed again" in said


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("command", "table", "done"),
    [
        (["prune", "--older-than", "400d"], "events", "pruned 0 events"),
        (["db", "upgrade"], "alembic_version", f"schema: already at {head_revision()}"),
    ],
    ids=["prune", "db_upgrade"],
)
def test_maintenance_commands_are_not_cut_off_by_the_statement_timeout(
    postgres_url: str, tmp_path: Path, command: list[str], table: str, done: str
) -> None:
    """A prune or an upgrade may run for minutes: the service's limit is not theirs."""
    env = herald_environment(HERALD_POSTGRES_STATEMENT_TIMEOUT="0.5")
    with scratch_postgres_database(postgres_url) as url:
        migrated(url)
        with tables_locked(url, table):
            running = subprocess.Popen(
                [*herald_command(), *command, "--database", url],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                wait_for(lambda: lock_waiters(url) > 0, "wait for the lock", timeout=30)
                time.sleep(1.5)  # three times the service's statement timeout
                assert running.poll() is None, running.communicate()[0]
            except BaseException:
                running.kill()
                raise
        output = running.communicate(timeout=30)[0]

    assert running.returncode == 0, output
    assert done in output


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"tcp_user_timeout": "30000", "keepalives_idle": "10", "connect_timeout": "10"}),
        (
            "?tcp_user_timeout=5000&keepalives_idle=60",
            {"tcp_user_timeout": "5000", "keepalives_idle": "60", "connect_timeout": "10"},
        ),
    ],
    ids=["defaults", "the-url-s-own"],
)
def test_a_postgresql_connection_gives_up_on_a_server_that_stops_answering(
    postgres_url: str, query: str, expected: dict[str, str]
) -> None:
    """Past connecting, a cut network would hold a request until the system's TCP retries
    gave up (some 15 minutes): Herald's connections give up after 30 s of unacknowledged
    data, and probe an idle one after 10 s, unless the URL says otherwise."""
    database = Database(postgres_url + query)
    try:
        with database.writer.connect() as connection:
            parameters = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        database.dispose()

    assert {name: parameters.get(name) for name in expected} == expected
    assert parameters.get("keepalives") == "1"
