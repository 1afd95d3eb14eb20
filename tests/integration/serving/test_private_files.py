"""The files that hold personal data, the SQLite database and the stub provider's
outbox: Herald creates them readable by their owner alone, and says so at start when it
finds one that other users of the machine can read."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import HeraldProcess, herald_environment, run_herald
from tests.support.serving import sqlite_url


def _worker_output(tmp_path: Path, url: str, outbox: Path) -> str:
    env = herald_environment(HERALD_DATABASE_URL=url, HERALD_OUTBOX_FILE=str(outbox))
    with HeraldProcess("worker", log_dir=tmp_path) as worker:
        worker.start(["worker"], env, cwd=tmp_path)
        worker.wait_for_output("delivering ")
        return worker.output()


def test_a_worker_warns_of_a_database_and_an_outbox_other_users_can_read(
    tmp_path: Path,
) -> None:
    """A database made by another tool (`sqlite3`, a copy) follows the umask, often
    readable by all: every user of the machine could read the audit's personal data."""
    url = sqlite_url(tmp_path)
    made = run_herald(["db", "upgrade", "--database", url], env=herald_environment(), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    database, outbox = tmp_path / "herald.db", tmp_path / "outbox.jsonl"
    database.chmod(0o644)
    outbox.write_text("")
    outbox.chmod(0o640)

    output = " ".join(_worker_output(tmp_path, url, outbox).split())

    assert (
        f"warning: {database} can be read by other users of this machine (mode 0644), "
        f"though it holds personal data: `chmod 600 {database}`"
    ) in output
    assert (
        f"warning: {outbox} can be read by other users of this machine (mode 0640), "
        f"though it holds personal data: `chmod 600 {outbox}`"
    ) in output


def test_files_herald_created_draw_no_warning(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    made = run_herald(["db", "upgrade", "--database", url], env=herald_environment(), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    outbox = tmp_path / "outbox.jsonl"

    output = _worker_output(tmp_path, url, outbox)

    assert (tmp_path / "herald.db").stat().st_mode & 0o777 == 0o600
    assert "can be read by other users" not in output
