"""`herald users forget USER_ID`: what it deletes and redacts, said; with `--dry-run`,
said and not done; an unknown user, an error."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import ReadOnly
from tests.conftest import FixedClock
from tests.support.delivery import funds_failure, store
from tests.support.events import opted_in_signup
from tests.support.processes import herald_environment, run_herald
from tests.support.read_only import read_only
from tests.support.store_rows import claim


def _forget(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["users", "forget", *args, "--database", database_url])
    return result.exit_code, " ".join(result.output.split())


def test_forget_says_what_it_would_do_then_does_it(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [opted_in_signup("ana"), funds_failure("ana"), funds_failure("bo")])
    with ReadOnly(database) as read:
        foreseen = read.erasure.count("ana")

    code, said = _forget(database_url, "ana", "--dry-run")

    assert code == 0
    assert said == (
        "would delete 2 events, 2 traits and 0 delivery attempts of user 'ana'; would redact 2 "
        "messages and would cancel the 2 of them not sent yet (dry run: nothing changed)"
    )
    with ReadOnly(database) as read:
        assert read.erasure.count("ana") == foreseen  # nothing changed

    code, said = _forget(database_url, "ana")

    assert code == 0
    assert said == (
        "deleted 2 events, 2 traits and 0 delivery attempts of user 'ana'; redacted 2 messages and "
        "cancelled the 2 of them not sent yet"
    )
    with ReadOnly(database) as read:
        assert read.erasure.count("ana").events == 0
        assert read.erasure.count("bo").events == 1
    assert _forget(database_url, "ana") == (
        0,
        "deleted 0 events, 0 traits and 0 delivery attempts of user 'ana'; redacted 0 messages",
    )


def test_forget_says_a_message_being_sent_ends_cancelled_and_how_to_finish(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("ana")])
    assert len(claim(database, "w", now_us=10**17)) == 1  # being sent

    code, said = _forget(database_url, "ana")

    assert code == 0
    assert said.endswith(
        "1 message being sent now: cancelled when the attempt ends, unless sent; the "
        "attempt's record is written then, so run this again afterwards to delete it"
    )


def test_forgetting_an_unknown_user_is_an_error(database: Database, database_url: str) -> None:
    code, said = _forget(database_url, "nobody")

    assert code == 1
    assert said == "error: no user 'nobody' in the database: nothing to forget"


def test_a_forgotten_user_s_data_is_left_in_no_file_of_the_sqlite_database(
    tmp_path: Path, clock: FixedClock
) -> None:
    """SQLite writes each change to its write-ahead log (`herald.db-wal`) first, and a
    log that has been copied into the database is not emptied but written over from its
    start by later commits: on a quiet server, the frames holding the user's email and
    texts stayed in the file for as long as it took the log to be filled again."""
    database_url = f"sqlite:///{tmp_path / 'herald.db'}"
    database = Database(database_url)
    upgrade(database)
    store(database, clock, [opted_in_signup("ana"), funds_failure("ana")])
    assert database.sqlite_path is not None
    files = [
        database.sqlite_path,
        database.sqlite_path.with_name(database.sqlite_path.name + "-wal"),
    ]
    assert any(b"ana@example.com" in f.read_bytes() for f in files if f.exists())

    code, _ = _forget(database_url, "ana")
    database.dispose()

    assert code == 0
    for file in files:
        if file.exists():
            assert b"ana@example.com" not in file.read_bytes(), file.name


def test_forget_removes_the_user_s_sends_from_the_stub_s_file_and_says_so(
    database: Database, database_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    store(database, clock, [funds_failure("ana")])
    outbox = tmp_path / "sent.jsonl"
    outbox.write_text(
        '{"user_id": "ana", "recipient": "ana@example.com"}\n{"user_id": "bo"}\n',
        encoding="utf-8",
    )
    command = ["users", "forget", "ana", "--database", database_url]
    env = {"HERALD_OUTBOX_FILE": str(outbox)}

    dry = CliRunner().invoke(cli, [*command, "--dry-run"], env=env)
    done = CliRunner().invoke(cli, command, env=env)

    assert (dry.exit_code, done.exit_code) == (0, 0), done.output
    assert f"would remove 1 send of theirs from the stub provider's file {outbox}" in (
        " ".join(dry.output.split())
    )
    assert f"removed 1 send of theirs from the stub provider's file {outbox}" in (
        " ".join(done.output.split())
    )
    assert outbox.read_text(encoding="utf-8") == '{"user_id": "bo"}\n'


def test_a_dry_run_counts_on_a_database_that_refuses_writes(
    database: Database, database_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    """It changes nothing, yet it was refused as a forget would be: a compliance officer
    with read access alone (a standby, a copy of the file) could not learn what it holds."""
    store(database, clock, [funds_failure("ana")])

    with read_only(database_url) as (url, prefix):
        command = ["users", "forget", "ana", "--database", url]
        env = herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"))
        dry = run_herald([*command, "--dry-run"], env=env, cwd=tmp_path, prefix=prefix)
        done = run_herald(command, env=env, cwd=tmp_path, prefix=prefix)

    assert dry.returncode == 0, dry.stderr
    assert " ".join(dry.stderr.split()) == (
        "would delete 1 event, 1 trait and 0 delivery attempts of user 'ana'; would redact 1 "
        "message and would cancel the 1 of them not sent yet (dry run: nothing changed)"
    )
    assert done.returncode == 1
    assert "error: the database refuses writes" in done.stderr
    with ReadOnly(database) as read:
        assert read.erasure.count("ana").events == 1


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (Path.mkdir, "it is a folder; name a file in it"),
        # Opened to read, a FIFO no one wrote held the command for good.
        (os.mkfifo, "it is a FIFO (a named pipe), not a regular file; name a file"),
    ],
    ids=["folder", "fifo"],
)
def test_a_stub_file_that_cannot_be_read_stops_the_forget_before_it_changes_anything(
    make: Callable[[Path], None],
    what: str,
    database: Database,
    database_url: str,
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    """HERALD_OUTBOX_FILE naming a folder: the user was forgotten in the database, then
    the command failed on the file and said to run it again, which failed the same way."""
    store(database, clock, [funds_failure("ana")])
    outbox = tmp_path / "outbox"
    make(outbox)

    result = CliRunner().invoke(
        cli,
        ["users", "forget", "ana", "--database", database_url],
        env={"HERALD_OUTBOX_FILE": str(outbox), "COLUMNS": "1000"},
    )

    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"error: cannot read the stub provider's file {outbox}: {what}: nothing was "
        "changed; set HERALD_OUTBOX_FILE to the file the server writes, or unset it"
    ]
    with ReadOnly(database) as read:
        assert read.erasure.count("ana").events == 1
