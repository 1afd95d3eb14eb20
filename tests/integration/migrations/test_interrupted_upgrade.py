"""Ctrl-C during an upgrade leaves the database at the revision before, and says so."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from sqlalchemy import text

from herald.store.database import Database
from herald.store.migrate import current_revision, head_revision, upgrade
from tests.support.migrations import one_line, schema_differences
from tests.support.processes import herald_command, herald_environment, run_herald


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
