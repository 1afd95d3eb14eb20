"""`herald db backup`: a copy of a SQLite database taken while a server ingests into it
holds every event acknowledged before it began, opens at the head revision and serves
the audit; it never leaves a half-written file, and sends PostgreSQL to pg_dump."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.domain.model import Event
from herald.rules.loader import load_ruleset
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.migrate import head_revision, upgrade
from herald.store.unit_of_work import UnitOfWork
from tests.support.ports import free_port
from tests.support.processes import (
    HeraldProcess,
    herald_command,
    herald_environment,
    run_herald,
    wait_for,
    without_file_powers,
)

USERS = 20


def signup(n: int) -> dict[str, object]:
    """The ``n``th event a client posts: a signup of one of ``USERS`` users."""
    return {
        "event_id": f"signup-{n}",
        "user_id": f"u_{n % USERS}",
        "event_type": "signup_completed",
        "event_timestamp": f"2025-11-03T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "user_traits": {"email": f"u_{n % USERS}@example.com", "marketing_opt_in": True},
    }


class Sender:
    """Posts events one at a time from a few threads until stopped, noting when each was
    acknowledged."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self._url = url
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.acknowledged: list[tuple[float, str]] = []  # (monotonic time, event id)
        self._threads = [threading.Thread(target=self._send) for _ in range(threads)]

    def __enter__(self) -> Sender:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def acknowledged_before(self, moment: float) -> set[str]:
        with self._lock:
            return {event_id for at, event_id in self.acknowledged if at < moment}

    def count_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for at, _ in self.acknowledged if start <= at <= end)

    def _send(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30) as client:
            while not self._stop.is_set():
                with self._lock:
                    n, self._next = self._next, self._next + 1
                answer = client.post("/events", json=signup(n))
                assert answer.status_code == 202, answer.text
                with self._lock:
                    self.acknowledged.append((time.monotonic(), f"signup-{n}"))


def serve(tmp_path: Path, name: str, database: Path) -> tuple[HeraldProcess, str]:
    port = free_port()
    server = HeraldProcess(name, log_dir=tmp_path)
    env = herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / f"{name}-outbox.jsonl"))
    server.start(
        ["serve", "--port", str(port), "--database", f"sqlite:///{database}", "--no-dispatcher"],
        env,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_healthy(url + "/readyz", timeout=45)
    return server, url


@pytest.mark.slow
def test_a_backup_taken_during_ingestion_holds_every_acknowledged_event_and_serves_the_audit(
    tmp_path: Path,
) -> None:
    source, copy = tmp_path / "herald.db", tmp_path / "backups" / "herald-copy.db"
    copy.parent.mkdir()
    env = herald_environment()
    server, url = serve(tmp_path, "api", source)
    try:
        # A history for the copy to take a while over, as the events keep coming.
        history = [{**signup(n), "event_id": f"history-{n}"} for n in range(2000)]
        for start in range(0, len(history), 500):
            answer = httpx.post(
                f"{url}/events/batch", json={"events": history[start : start + 500]}, timeout=60
            )
            assert answer.status_code == 200, answer.text
        with Sender(url) as sender:
            while len(sender.acknowledged_before(time.monotonic())) < 50:
                time.sleep(0.05)
            began = time.monotonic()
            before = sender.acknowledged_before(began)
            result = run_herald(
                ["db", "backup", str(copy), "--database", f"sqlite:///{source}"],
                env=env,
                cwd=tmp_path,
            )
            ended = time.monotonic()
            time.sleep(0.5)
        assert result.returncode == 0, result.stderr
        assert sender.count_between(began, ended) > 0, "the server stopped ingesting"
    finally:
        server.stop()

    assert f"backed up {source} to {copy}:" in result.stdout
    assert f"schema revision {head_revision()}" in result.stdout
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no partial file left
    with sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True) as stored:
        ids = {row[0] for row in stored.execute("SELECT event_id FROM events")}
        (stated,) = stored.execute("SELECT count(*) FROM events").fetchone()
    assert before <= ids
    assert {f"history-{n}" for n in range(2000)} <= ids
    assert f"{stated:,} events" in result.stdout

    current = run_herald(
        ["db", "current", "--database", f"sqlite:///{copy}"], env=env, cwd=tmp_path
    )
    assert current.returncode == 0, current.stderr
    assert f"schema at revision {head_revision()}: current" in current.stdout

    restored, restored_url = serve(tmp_path, "restored", copy)
    try:
        for user in ("u_0", "u_7"):
            audit = httpx.get(f"{restored_url}/audit/{user}", params={"limit": 1000}, timeout=30)
            assert audit.status_code == 200, audit.text
            shown = {entry["event_id"] for entry in audit.json()["events"]}
            assert {e for e in before if int(e.split("-")[1]) % USERS == int(user[2:])} <= shown
    finally:
        restored.stop()


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
