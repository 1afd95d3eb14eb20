"""`herald db backup` refuses what it must not do (an existing DEST without --force, the
database's own files, a PostgreSQL database, which it sends to pg_dump) and never leaves
a half-written file: not when the folder is read-only, the disk fills up midway, or it
is interrupted. Its copy of a database a server is writing to: test_db_backup_live.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.domain.model import Event
from herald.rules.loader import load_ruleset
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import UnitOfWork
from tests.support.processes import (
    herald_command,
    herald_environment,
    run_herald,
    wait_for,
    without_file_powers,
)


def a_stored_database(path: Path, events: int = 10, padding: int = 0) -> str:
    """The URL of a migrated SQLite database at ``path`` holding ``events`` signups, each
    with ``padding`` characters of properties."""
    url = f"sqlite:///{path}"
    database = Database(url)
    try:
        upgrade(database)
        ruleset = load_ruleset()
        batch = [
            Event(
                event_id=f"e-{n}",
                user_id=f"u_{n}",
                event_type="signup_completed",
                timestamp=datetime(2025, 11, 3, 10, tzinfo=UTC),
                properties={"note": "x" * padding},
                user_traits={"email": f"u_{n}@example.com", "marketing_opt_in": True},
            )
            for n in range(events)
        ]
        with UnitOfWork(database) as uow:
            ingest(uow, batch, ruleset, now=datetime(2025, 11, 3, 12, tzinfo=UTC))
            uow.commit()
    finally:
        database.dispose()
    return url


def test_an_existing_destination_is_refused_unless_forced(tmp_path: Path) -> None:
    url = a_stored_database(tmp_path / "herald.db")
    dest = tmp_path / "backup.db"
    dest.write_text("last week's backup")

    refused = CliRunner().invoke(app, ["db", "backup", str(dest), "--database", url])

    assert refused.exit_code == 1, refused.output
    assert f"error: {dest} exists: name another file, or replace it with --force" in (
        refused.output.replace("\n", "")
    )
    assert dest.read_text() == "last week's backup"

    forced = CliRunner().invoke(app, ["db", "backup", str(dest), "--database", url, "--force"])

    assert forced.exit_code == 0, forced.output
    assert "10 events and 10 messages" in forced.output
    with sqlite3.connect(dest) as stored:
        assert stored.execute("SELECT count(*) FROM events").fetchone() == (10,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "herald.db"]


def test_the_database_itself_is_never_overwritten_even_with_force(tmp_path: Path) -> None:
    source = tmp_path / "herald.db"
    url = a_stored_database(source)

    refused = CliRunner().invoke(app, ["db", "backup", str(source), "--database", url, "--force"])

    assert refused.exit_code == 1, refused.output
    assert "is the database's own file" in refused.output
    with sqlite3.connect(source) as stored:
        assert stored.execute("SELECT count(*) FROM events").fetchone() == (10,)


def test_a_postgresql_database_is_sent_to_pg_dump_without_its_password(tmp_path: Path) -> None:
    dest = tmp_path / "backup.db"
    url = "postgresql://herald:s3cret@db.example.com:5432/herald"

    refused = CliRunner().invoke(
        app, ["db", "backup", str(dest), "--database", url], env={"COLUMNS": "1000"}
    )

    assert refused.exit_code == 1, refused.output
    assert (
        "pg_dump --format=custom --file=herald.dump "
        "'postgresql://herald@db.example.com:5432/herald'" in refused.output
    )
    assert "s3cret" not in refused.output
    assert not dest.exists()


def test_an_unwritable_folder_is_said_and_nothing_is_left_in_it(tmp_path: Path) -> None:
    url = a_stored_database(tmp_path / "herald.db")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = run_herald(
            ["db", "backup", str(folder / "backup.db"), "--database", url],
            env=herald_environment(),
            cwd=tmp_path,
            prefix=without_file_powers(),
        )
        assert result.returncode == 1, result.stderr
        assert f"error: cannot write to the folder {folder}: Permission denied" in result.stderr
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_copy_that_fails_midway_leaves_no_file_behind(tmp_path: Path) -> None:
    """The disk fills up during the copy (here, a limit on the size of the files the
    command may write): the partial copy is removed, and DEST never appears."""
    url = a_stored_database(tmp_path / "herald.db", events=200, padding=5000)
    folder = tmp_path / "backups"
    folder.mkdir()
    limited = ["bash", "-c", 'ulimit -f 256 && exec "$@"', "bash"]  # 256 KiB

    result = run_herald(
        ["db", "backup", str(folder / "backup.db"), "--database", url],
        env=herald_environment(),
        cwd=tmp_path,
        prefix=limited,
    )

    assert result.returncode == 1, result.stderr
    assert "error: the backup failed, and nothing was written:" in result.stderr
    assert list(folder.iterdir()) == []


@pytest.fixture(scope="module")
def a_large_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """About 100 MB: its copy and check take long enough to be interrupted."""
    return a_stored_database(
        tmp_path_factory.mktemp("large") / "herald.db", events=1000, padding=100_000
    )


@pytest.mark.parametrize(
    ("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_an_interrupted_backup_says_nothing_was_written_and_leaves_nothing(
    a_large_database: str, tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    backup = subprocess.Popen(
        [*herald_command(), "db", "backup", str(folder / "b.db"), "--database", a_large_database],
        env=herald_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the copy has begun to be written.
        wait_for(
            lambda: any(p.stat().st_size for p in folder.iterdir()), "a partial copy", timeout=30
        )
        backup.send_signal(stop)
        _, said = backup.communicate(timeout=30)
    finally:
        backup.kill()
        backup.wait()

    assert backup.returncode == code, said
    assert "error: interrupted: nothing was written" in said
    assert list(folder.iterdir()) == []


# `herald db backup`, signalled by the given signal as soon as its temporary copy exists,
# before the command has returned from creating it.
_SIGNALLED_ONCE_ITS_COPY_EXISTS = """
import signal, sys, tempfile
from herald.cli.main import main

created = tempfile.mkstemp
stop = getattr(signal, sys.argv.pop(1))

def created_then_stopped(*args, **kwargs):
    made = created(*args, **kwargs)
    if kwargs.get("suffix") == ".partial":
        signal.raise_signal(stop)
    return made

tempfile.mkstemp = created_then_stopped
sys.argv[0] = "herald"
main()
"""


@pytest.mark.parametrize(
    ("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_backup_stopped_as_its_copy_is_created_leaves_nothing(
    tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    """Stopped between creating its temporary copy and the step that would remove it,
    the command left the copy behind (SIGTERM killed it without a word)."""
    url = a_stored_database(tmp_path / "herald.db")
    folder = tmp_path / "backups"
    folder.mkdir()

    backup = ["db", "backup", str(folder / "b.db"), "--database", url]

    stopped = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_ONCE_ITS_COPY_EXISTS, stop.name, *backup],
        env=herald_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert stopped.returncode == code, stopped.stderr
    assert "error: interrupted: nothing was written" in stopped.stderr
    assert list(folder.iterdir()) == []


def test_a_backup_run_away_from_its_database_says_so_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default database, ./herald.db, is not here
    monkeypatch.delenv("HERALD_DATABASE_URL", raising=False)

    result = CliRunner().invoke(app, ["db", "backup", "backup.db"], env={"COLUMNS": "1000"})

    assert result.exit_code == 1, result.output
    assert f"error: no SQLite database at {tmp_path / 'herald.db'}" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_file_without_herald_s_schema_is_not_backed_up(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    connection.close()

    result = CliRunner().invoke(
        app,
        ["db", "backup", str(tmp_path / "b.db"), "--database", f"sqlite:///{other}"],
        env={"COLUMNS": "1000"},
    )

    assert result.exit_code == 1, result.output
    assert f"error: {other} holds no Herald schema" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_destination_that_is_not_a_regular_file_is_refused_even_with_force(
    tmp_path: Path,
) -> None:
    url = a_stored_database(tmp_path / "herald.db")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)

    refused = CliRunner().invoke(
        app, ["db", "backup", str(pipe), "--database", url, "--force"], env={"COLUMNS": "1000"}
    )

    assert refused.exit_code == 1, refused.output
    assert f"error: {pipe} is not a regular file" in refused.output
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["herald.db", "pipe"]


def test_a_backup_of_one_event_says_so_in_the_singular(tmp_path: Path) -> None:
    url = a_stored_database(tmp_path / "herald.db", events=1)

    written = CliRunner().invoke(app, ["db", "backup", str(tmp_path / "one.db"), "--database", url])

    assert written.exit_code == 0, written.output
    assert "1 event and 1 message, in" in written.output.replace("\n", " ")


def test_a_destination_written_as_a_folder_that_does_not_exist_is_refused(
    tmp_path: Path,
) -> None:
    """``backups/`` names a folder: the copy was written as a file of that name, in the
    place of the folder the operator meant (one not created yet, a volume not mounted)."""
    url = a_stored_database(tmp_path / "herald.db")
    meant = tmp_path / "backups"

    refused = CliRunner().invoke(
        app, ["db", "backup", f"{meant}/", "--database", url], env={"COLUMNS": "1000"}
    )

    assert refused.exit_code == 1, refused.output
    assert (
        f"error: the folder {meant} does not exist: create it, or correct the path"
        in refused.output
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["herald.db"]
