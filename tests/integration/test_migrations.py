"""Schema migrations: ``herald db upgrade`` builds the schema Herald's tables describe,
an embedded SQLite database upgrades itself, and a shared PostgreSQL database is never
migrated behind the operator's back: ``herald serve`` refuses it until they upgrade.

The CLI runs as a subprocess (the installed ``herald``), on databases made for each test.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from herald.api.app import create_app
from herald.api.schemas.responses import ReadinessOut
from herald.bootstrap import build_runtime
from herald.cli.main import app as cli
from herald.config import Settings
from herald.domain.model import Event, Outcome, message_id_for
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestResult, ingest
from herald.store.database import Database
from herald.store.migrate import current_revision, head_revision, upgrade
from herald.store.tables import metadata
from herald.store.unit_of_work import UnitOfWork
from tests.support.events import opted_in_signup
from tests.support.ports import free_port
from tests.support.processes import (
    herald_command,
    herald_environment,
    run_herald,
    scratch_postgres_database,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with nothing in it, not even Herald's schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with scratch_postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> Iterator[str]:
    with scratch_postgres_database(postgres_url) as url:
        yield url


def one_line(text: str) -> str:
    return " ".join(text.split())


def schema_differences(database: Database) -> list[object]:
    """What Alembic's autogenerate would change to make the database match ``tables.py``."""
    with database.writer.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


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


def store(database: Database, event: Event) -> IngestResult:
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [event], load_ruleset(), now=datetime(2025, 11, 3, 12, tzinfo=UTC))
        uow.commit()
    return result


def test_upgrading_through_0004_keeps_the_messages_and_their_limits(
    empty_database_url: str,
) -> None:
    # 0004 drops the unique constraint on dedup keys: the primary key holds limits since.
    database = Database(empty_database_url)
    try:
        upgrade(database, to="0003")
        store(database, opted_in_signup("u1"))

        upgrade(database)
        again = store(database, replace(opted_in_signup("u1"), event_id="s-u1-again"))

        assert schema_differences(database) == []
        welcome = next(d for d in again.decisions if d.rule == "WELCOME_EMAIL")
        assert welcome.outcome is Outcome.SUPPRESSED
        assert welcome.message_id == message_id_for("WELCOME_EMAIL:u1")
        with database.reader.connect() as connection:
            stored = connection.execute(text("SELECT dedup_key FROM messages")).scalars().all()
        assert stored == ["WELCOME_EMAIL:u1"]
    finally:
        database.dispose()


def test_upgrading_through_0005_keeps_the_messages_and_a_claim_under_way(
    empty_database_url: str,
) -> None:
    # 0005 adds messages.cancel_requested, where a rule's cancel marks those being sent.
    database = Database(empty_database_url)
    try:
        upgrade(database, to="0004")
        store(database, opted_in_signup("u1"))
        welcome = message_id_for("WELCOME_EMAIL:u1")
        with database.writer.begin() as connection:  # being sent, as a dispatcher claims
            connection.execute(
                text(
                    "UPDATE messages SET status = 'sending', claimed_by = 'w1', "
                    "lease_until_us = 1 WHERE message_id = :id"
                ),
                {"id": welcome},
            )
        with database.reader.connect() as connection:
            before = connection.execute(text("SELECT * FROM messages")).mappings().all()

        upgrade(database)

        assert schema_differences(database) == []
        with database.reader.connect() as connection:
            after = connection.execute(text("SELECT * FROM messages")).mappings().all()
        assert [{**row, "cancel_requested": None} for row in before] == [dict(row) for row in after]
        with UnitOfWork(database) as uow:
            done = uow.outbox.cancel_rule("WELCOME_EMAIL", reason="stop", now_us=2)
            uow.commit()
        assert done.in_flight == 1
    finally:
        database.dispose()


def add_sent_messages(path: Path, count: int) -> None:
    """``count`` sent messages, written straight to the SQLite file at ``path``."""
    with sqlite3.connect(path) as connection:
        connection.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO messages (message_id, dedup_key, user_id, event_id, rule,
                rule_version, channel, category, recipient, subject, body, status,
                created_us, due_us, attempts)
            SELECT printf('%064d', i), 'WELCOME_EMAIL:u' || i, 'u' || i, 'e' || i,
                'WELCOME_EMAIL', 'v1', 'email', 'transactional', 'u@example.com', 'Hello',
                'Welcome aboard', 'sent', i, i, 1
            FROM n
            """,
            (count,),
        )
    connection.close()


def wait_until_written(log: Path, upgrade: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until the write-ahead log at ``log`` holds pages of the running upgrade: its
    copy of the table is under way (the page cache holds only the first 64 MiB)."""
    deadline = time.monotonic() + timeout
    while not (log.exists() and log.stat().st_size > 0):
        assert upgrade.poll() is None, upgrade.communicate()[0]
        assert time.monotonic() < deadline, "the upgrade wrote nothing"
        time.sleep(0.01)


def test_ctrl_c_during_an_upgrade_leaves_the_previous_revision_and_says_so(
    tmp_path: Path,
) -> None:
    """Ctrl-C while 0004 copies a large messages table: exit 130 with one line saying where
    the database is, rather than an error of SQLAlchemy's about a pending rollback."""
    path = tmp_path / "herald.db"
    url = f"sqlite:///{path}"
    database = Database(url)
    upgrade(database, to="0003")
    database.dispose()
    add_sent_messages(path, 400_000)  # a copy that takes a second or so
    args = ["db", "upgrade", "--database", url]
    running = subprocess.Popen(
        [*herald_command(), *args],
        env=herald_environment(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert running.stdout is not None
        said = running.stdout.readline()
        assert "revision(s): 0004: " in said and said.lstrip().startswith("applying")
        wait_until_written(path.with_name("herald.db-wal"), running)
        running.send_signal(signal.SIGINT)
        output = running.communicate(timeout=60)[0]
    finally:
        running.kill()

    assert running.returncode == 130, output
    assert output.strip().splitlines()[-1] == (
        "error: interrupted: the database is left at revision 0003; run `herald db upgrade` again"
    )
    assert "Traceback" not in output
    database = Database(url)
    try:
        assert current_revision(database) == "0003"
        with database.reader.connect() as connection:
            kept = connection.execute(text("SELECT count(*) FROM messages")).scalar_one()
        assert kept == 400_000

        again = run_herald(args, env=herald_environment(), cwd=tmp_path)

        assert again.returncode == 0, again.stderr
        assert f"schema: 0003 -> {head_revision()}" in one_line(again.stdout + again.stderr)
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


def test_readyz_answers_200_with_the_revision_when_the_schema_is_current(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url, dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert response.json()["schema"] == head_revision()


def test_readyz_answers_503_once_the_schema_falls_behind(
    empty_database_url: str, tmp_path: Path
) -> None:
    database = Database(empty_database_url)
    upgrade(database)
    settings = Settings(
        database_url=empty_database_url, dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        with database.writer.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        response = client.get("/readyz")
        documented = client.get("/openapi.json").json()["paths"]["/readyz"]["get"]["responses"]
    database.dispose()

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "schema": f"at older, need {head_revision()}",
    }
    # The document gives the 503 the body it has, as it does the 200.
    for code in ("200", "503"):
        schema = documented[code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ReadinessOut"}, code
    ReadinessOut.model_validate(response.json())


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_readyz_answers_503_once_the_sqlite_file_is_deleted_or_replaced_under_the_server(
    change: str, tmp_path: Path
) -> None:
    """The server's open connections go on writing to the file they opened: events are
    still acknowledged, and a restart would not find them at the database's path."""
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    settings = Settings(
        database_url=f"sqlite:///{path}", dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        for leftover in tmp_path.glob("herald.db*"):
            leftover.unlink()
        if change == "replaced":
            path.touch()  # a new, empty file where it was
        response = client.get("/readyz")

    assert response.status_code == 503
    said = "is gone" if change == "deleted" else "is another file"
    assert response.json() == {
        "status": "unavailable",
        "database": f"{path} {said}: not the SQLite file this process opened",
    }
    ReadinessOut.model_validate(response.json())


def test_the_metrics_say_the_database_is_down_once_its_sqlite_file_is_gone(
    tmp_path: Path,
) -> None:
    # herald_database_up stayed 1: a dispatcher, which has no /readyz, showed nothing
    # wrong while it delivered from a file that a restart would not find.
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    settings = Settings(
        database_url=f"sqlite:///{path}", dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        assert "herald_database_up 1.0" in client.get("/metrics").text
        for leftover in tmp_path.glob("herald.db*"):
            leftover.unlink()
        scraped = client.get("/metrics").text

    assert "herald_database_up 0.0" in scraped
    assert "herald_outbox_backlog" not in scraped


def test_db_current_says_the_revision_and_what_an_upgrade_would_apply_changing_nothing(
    empty_database_url: str,
) -> None:
    """Before upgrading, an operator had no way to see where a database stood but to
    upgrade it (or read `alembic_version` by hand)."""
    database = Database(empty_database_url)
    upgrade(database, to="0002")
    runner = CliRunner()

    behind = runner.invoke(cli, ["db", "current", "--database", empty_database_url])
    still = current_revision(database)
    upgrade(database)
    current = runner.invoke(cli, ["db", "current", "--database", empty_database_url])
    database.dispose()

    assert behind.exit_code == 0, behind.output
    head = head_revision()
    assert one_line(behind.output).startswith(
        f"schema at revision 0002; this Herald needs {head}: `herald db upgrade` would apply"
    )
    assert "0003: Drop the (user, type, time) index on events" in one_line(behind.output)
    assert still == "0002"  # it changed nothing
    assert current.exit_code == 0, current.output
    assert one_line(current.output) == (
        f"schema at revision {head}: current, the newest this Herald knows"
    )


def test_db_current_check_exits_3_when_an_upgrade_is_pending_and_0_when_current(
    empty_database_url: str, tmp_path: Path
) -> None:
    """`db current` exits 0 either way: a deployment script could only ask whether to
    upgrade by parsing its line. With --check, a pending upgrade is an exit of its own,
    apart from an error's 1."""
    database = Database(empty_database_url)
    upgrade(database, to="0002")

    def check() -> subprocess.CompletedProcess[str]:
        command = ["db", "current", "--check", "--database", empty_database_url]
        return run_herald(command, env=herald_environment(), cwd=tmp_path)

    behind = check()
    upgrade(database)
    current = check()
    with database.writer.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    database.dispose()
    newer = check()

    assert behind.returncode == 3, behind.stderr
    assert one_line(behind.stdout).startswith(
        f"schema at revision 0002; this Herald needs {head_revision()}: `herald db upgrade` "
        "would apply"
    )
    assert "0003: Drop the (user, type, time) index on events" in one_line(behind.stdout)
    assert current.returncode == 0, current.stderr
    assert one_line(current.stdout) == (
        f"schema at revision {head_revision()}: current, the newest this Herald knows"
    )
    assert newer.returncode == 1  # no upgrade would help: an error, not "pending"
    assert "written by a newer Herald" in newer.stderr
