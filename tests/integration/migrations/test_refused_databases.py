"""A database Herald cannot run on is refused in one line saying why: one from a newer
Herald, another program's, and a shared PostgreSQL database not yet upgraded, which is
never migrated behind the operator's back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from herald.bootstrap import build_runtime
from herald.config import Settings
from herald.store.database import Database
from herald.store.migrate import current_revision, head_revision
from tests.support.migrations import one_line
from tests.support.ports import free_port
from tests.support.processes import herald_environment, run_herald


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["serve", "--port", "0"], ["worker"]],
    ids=["upgrade", "serve", "worker"],
)
def test_a_database_from_a_newer_herald_is_refused_in_one_line_saying_so(
    command: list[str], empty_database_url: str, tmp_path: Path
) -> None:
    run_herald(
        ["db", "upgrade", "--database", empty_database_url], env=herald_environment(), cwd=tmp_path
    )
    database = Database(empty_database_url)
    with database.writer.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    database.dispose()

    result = run_herald(
        [*command, "--database", empty_database_url], env=herald_environment(), cwd=tmp_path
    )

    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "error: the database schema is at 9999, which this Herald does not know (its newest "
        f"is {head_revision()}): it was written by a newer Herald; run that one"
    )


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["serve", "--port", "0"], ["worker"]],
    ids=["upgrade", "serve", "worker"],
)
def test_a_database_at_another_program_s_revision_is_refused_as_not_herald_s(
    command: list[str], empty_database_url: str, tmp_path: Path
) -> None:
    """Another application's Alembic keeps its revision in the same table: that is not a
    newer Herald, and no Herald version would run on it."""
    database = Database(empty_database_url)
    with database.writer.begin() as connection:
        connection.execute(
            text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        )
        connection.execute(text("INSERT INTO alembic_version VALUES ('1975ea83b712')"))
    database.dispose()

    result = run_herald(
        [*command, "--database", empty_database_url], env=herald_environment(), cwd=tmp_path
    )

    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "error: the database schema is at 1975ea83b712, which is not one of Herald's "
        "revisions: the database holds another program's schema; give Herald a database "
        "of its own"
    )


def test_an_sqlite_file_of_another_program_is_refused_not_given_herald_s_tables(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER)")
    connection.close()

    result = run_herald(
        ["db", "upgrade", "--database", f"sqlite:///{path}"], env=herald_environment(), cwd=tmp_path
    )

    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"error: {path} holds tables that are not Herald's (customers): Herald keeps a "
        "database of its own; name a new file"
    )
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
    connection.close()
    assert tables == ["customers"]


@pytest.mark.parametrize(
    "command",
    [
        ["db", "current", "--check"],
        ["users", "audit", "u_1"],
        ["prune", "--older-than", "400d"],
        ["messages", "failed"],
    ],
    ids=["db current", "users audit", "prune", "messages failed"],
)
def test_an_sqlite_file_of_another_program_is_named_so_by_every_command(
    command: list[str], tmp_path: Path
) -> None:
    """They called it an empty database to upgrade (`db current --check` exited 3,
    "upgrade pending"), and `herald db upgrade` then refused it."""
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER)")
    connection.close()

    result = run_herald(
        [*command, "--database", f"sqlite:///{path}"], env=herald_environment(), cwd=tmp_path
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result.stderr) == (
        f"error: {path} holds tables that are not Herald's (customers): Herald keeps a "
        "database of its own; name a new file"
    )
    assert result.stdout == ""


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_herald_refuses_an_unmigrated_postgresql_database_and_says_how_to_fix_it(
    command: str, empty_postgres_url: str, tmp_path: Path
) -> None:
    args = [command, "--database", empty_postgres_url]
    if command == "serve":
        args += ["--host", "127.0.0.1", "--port", str(free_port())]

    result = run_herald(args, env=herald_environment(), cwd=tmp_path, timeout=60)

    said = one_line(result.stdout + result.stderr)
    assert result.returncode == 1, said
    assert (
        f"error: the database schema is not there yet (an empty database), Herald needs "
        f"{head_revision()}: run `herald db upgrade --database URL` first"
    ) in said
    assert "Traceback" not in said
    database = Database(empty_postgres_url)
    try:
        assert current_revision(database) is None  # it did not migrate a shared database
    finally:
        database.dispose()


@pytest.mark.postgres
def test_build_runtime_refuses_an_unmigrated_postgresql_database(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=empty_postgres_url, outbox_file=str(tmp_path / "o.jsonl"))

    with pytest.raises(RuntimeError, match="herald db upgrade"):
        build_runtime(settings)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["serve", "--port", "0"], ["messages", "failed"]],
    ids=["upgrade", "serve", "messages failed"],
)
def test_a_postgresql_database_that_does_not_exist_is_named_with_how_to_create_it(
    command: list[str], postgres_url: str, tmp_path: Path
) -> None:
    # It said "cannot reach the database", of a server that had answered: an operator
    # went looking for a network problem, or expected `db upgrade` to create it.
    missing = make_url(postgres_url).set(database="herald_never_created")
    url = missing.render_as_string(hide_password=False)

    result = run_herald([*command, "--database", url], env=herald_environment(), cwd=tmp_path)

    said = one_line(result.stdout + result.stderr)
    assert result.returncode == 1, said
    assert (
        "error: the PostgreSQL server has no database 'herald_never_created': check the name "
        "in the URL; Herald creates its tables but not the database, so create a new one "
        "first (`createdb herald_never_created`, or CREATE DATABASE), then run `herald db "
        "upgrade --database URL`"
    ) in said
    assert "cannot reach" not in said and "Traceback" not in said
