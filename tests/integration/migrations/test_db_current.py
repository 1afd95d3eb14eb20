"""`herald db current` says where a database's schema stands and what an upgrade would
apply, changing nothing; with --check, its exit says whether an upgrade is pending."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.store.database import Database
from herald.store.migrate import current_revision, head_revision, upgrade
from tests.support.migrations import one_line
from tests.support.processes import herald_environment, run_herald


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
