"""`herald db upgrade` builds the schema Herald's tables describe, on an empty database, once
whoever else upgrades it at the same time, and an embedded SQLite database upgrades
itself. The CLI runs as a subprocess (the installed `herald`)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect

from herald.bootstrap import build_runtime
from herald.config import Settings
from herald.store.database import Database
from herald.store.migrate import current_revision, head_revision, upgrade
from herald.store.tables import metadata
from tests.support.migrations import one_line, schema_differences
from tests.support.postgres_locks import libpq_url
from tests.support.processes import herald_command, herald_environment, run_herald


def test_db_upgrade_builds_the_whole_schema_on_an_empty_database(
    empty_database_url: str, tmp_path: Path
) -> None:
    result = run_herald(
        ["db", "upgrade", "--database", empty_database_url],
        env=herald_environment(),
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    output = one_line(result.stdout + result.stderr)
    assert f"schema: empty -> {head_revision()}" in output
    # What is to be done is said first, then each revision as it is applied, with its
    # time: rebuilding a large table can take minutes.
    assert re.search(r"applying \d+ revision\(s\): 0001: initial schema; 0002: ", output), output
    assert re.search(r"applied 0001: initial schema \(\d+\.\d s\)", output), output
    assert f"applied {head_revision()}: " in output
    # A revision's summary is a phrase in a list, not a sentence: "arrival time.; 0003".
    assert not re.search(r"\.(;| \()", output), output
    database = Database(empty_database_url)
    try:
        assert current_revision(database) == head_revision()
        tables = set(inspect(database.writer).get_table_names())
        assert tables == set(metadata.tables) | {"alembic_version"}
        assert schema_differences(database) == []
    finally:
        database.dispose()


def test_a_new_sqlite_database_and_its_log_are_readable_by_their_owner_alone(
    tmp_path: Path,
) -> None:
    """The audit's personal data is in the file: under the usual umask (022), SQLite left
    to create it made it readable by every user of the machine."""
    path = tmp_path / "herald.db"
    result = run_herald(
        ["db", "upgrade", "--database", f"sqlite:///{path}"],
        env=herald_environment(),
        cwd=tmp_path,
        prefix=["sh", "-c", 'umask 022 && exec "$@"', "sh"],
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(path) as connection:  # a write makes the log files
        connection.execute("CREATE TABLE scratch (x)")
        modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in os.listdir(tmp_path)}

    assert modes == {"herald.db": 0o600, "herald.db-wal": 0o600, "herald.db-shm": 0o600}


def test_db_upgrade_of_a_current_database_changes_nothing(
    empty_database_url: str, tmp_path: Path
) -> None:
    command = ["db", "upgrade", "--database", empty_database_url]
    run_herald(command, env=herald_environment(), cwd=tmp_path)

    again = run_herald(command, env=herald_environment(), cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    head = head_revision()
    assert f"schema: already at {head}, nothing to apply" in one_line(again.stdout + again.stderr)


def test_upgrades_started_together_take_turns_and_all_succeed(
    empty_database_url: str, tmp_path: Path
) -> None:
    """As when each replica of a deployment runs `herald db upgrade` as it starts."""
    command = [*herald_command(), "db", "upgrade", "--database", empty_database_url]
    upgrades = [
        subprocess.Popen(
            command,
            env=herald_environment(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [upgrade.communicate(timeout=60)[0] for upgrade in upgrades]

    assert [upgrade.returncode for upgrade in upgrades] == [0, 0, 0], outputs
    # Each revision was applied once, by whichever upgrade went first.
    assert sum(output.count("applied 0001: initial schema") for output in outputs) == 1
    # Those that went later say they found the schema done, not that they built it.
    head = head_revision()
    assert sorted(f"schema: already at {head}, nothing" in output for output in outputs) == [
        False,
        True,
        True,
    ], outputs
    database = Database(empty_database_url)
    try:
        assert current_revision(database) == head_revision()
        assert schema_differences(database) == []
    finally:
        database.dispose()


def test_build_runtime_upgrades_an_empty_sqlite_database_by_itself(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'embedded.db'}",
        outbox_file=str(tmp_path / "outbox.jsonl"),
    )

    runtime = build_runtime(settings)

    try:
        assert current_revision(runtime.database) == head_revision()
        assert schema_differences(runtime.database) == []
    finally:
        runtime.database.dispose()


@pytest.mark.postgres
def test_an_upgrade_waiting_for_another_session_s_lock_says_which_and_how_to_end_it(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    # It printed the revisions to apply, then nothing for as long as a forgotten
    # transaction held the table: the operator saw an upgrade that hung.
    database = Database(empty_postgres_url)
    upgrade(database, to="0004")
    database.dispose()
    holder = psycopg.connect(libpq_url(empty_postgres_url))
    holder.execute("SELECT count(*) FROM messages")  # a transaction left open
    holder_pid = holder.info.backend_pid
    threading.Timer(6.5, holder.rollback).start()
    try:
        result = run_herald(
            ["db", "upgrade", "--database", empty_postgres_url],
            env=herald_environment(),
            cwd=tmp_path,
            timeout=60,
        )
    finally:
        holder.close()

    said = one_line(result.stderr)
    assert result.returncode == 0, said
    assert (
        f"waiting for a lock held by session {holder_pid} (idle in transaction, in a "
        "transaction for "
    ) in said
    assert "its latest statement: SELECT count(*) FROM messages)" in said
    assert f"SELECT pg_terminate_backend({holder_pid})" in said
    assert "applied 0005" in said
