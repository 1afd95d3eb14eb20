"""A maintenance command kept waiting for SQLite's write lock for the whole of its wait,
by another process holding it (a prune, a shell left in a write transaction), says so in
one line with what it left, rather than end in a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.store import sqlite_connections
from herald.store.database import Database
from herald.store.migrate import upgrade


@pytest.mark.parametrize(
    ("command", "left"),
    [
        (
            ["messages", "retry", "--failed"],
            "nothing was re-queued; run the same command again",
        ),
        (
            ["messages", "cancel", "--rule", "WELCOME_EMAIL"],
            "nothing was cancelled; run the same command again",
        ),
        (
            ["prune", "--older-than", "1d"],
            "the batches counted above are pruned and stay so; run the same command again "
            "to prune the rest",
        ),
        (["users", "forget", "u_1"], "nothing was changed; run the same command again"),
    ],
    ids=["retry", "cancel", "prune", "forget"],
)
def test_a_write_lock_held_for_the_whole_wait_is_one_clear_line(
    command: list[str], left: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'herald.db'}"
    database = Database(url)
    upgrade(database)
    database.dispose()
    # The 30 s wait cut short, so that the test does not take it: the command waits,
    # gives up and says so the same way.
    monkeypatch.setattr(sqlite_connections, "SQLITE_BUSY_TIMEOUT_MS", 300)
    other_process = sqlite3.connect(tmp_path / "herald.db", isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    try:
        result = CliRunner().invoke(app, [*command, "--database", url], env={"COLUMNS": "1000"})
    finally:
        other_process.execute("ROLLBACK")
        other_process.close()

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.splitlines() == [
        "error: another process held SQLite's write lock for the 0.3 s this command waits "
        f"for it (a prune, a shell left in a write transaction): {left}"
    ]
