"""`herald db backup` of a SQLite database while a real `herald serve` ingests into it:
the copy holds every event acknowledged before the backup began, the server goes on
acknowledging meanwhile, and a server started on the copy answers the audit."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from herald.store.migrate import head_revision
from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, run_herald

pytestmark = pytest.mark.slow

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
        self.refused: list[str] = []  # answers other than 202: the thread stops
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
                if answer.status_code != 202:
                    self.refused.append(f"{answer.status_code} {answer.text[:200]}")
                    return
                with self._lock:
                    self.acknowledged.append((time.monotonic(), f"signup-{n}"))


class FirstFile:
    """Notes when a file first appears in ``folder``: the copy's, made just before the
    copy begins."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._stop = threading.Event()
        self.appeared_at: float | None = None
        self._thread = threading.Thread(target=self._watch)

    def __enter__(self) -> FirstFile:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            if any(self._folder.iterdir()):
                self.appeared_at = time.monotonic()
                return
            time.sleep(0.002)


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
    server.wait_healthy(url + "/readyz")
    return server, url


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
            with FirstFile(copy.parent) as partial:
                began = time.monotonic()
                result = run_herald(
                    ["db", "backup", str(copy), "--database", f"sqlite:///{source}"],
                    env=env,
                    cwd=tmp_path,
                )
                ended = time.monotonic()
            time.sleep(0.5)
        assert result.returncode == 0, result.stderr
        assert sender.refused == []
        assert sender.count_between(began, ended) > 0, "the server stopped ingesting"
        assert partial.appeared_at is not None
        # Those of the last second are still in the write-ahead log alone: a copy of the
        # database file would miss them. Counted from the command's start: the copy's read
        # begins a few milliseconds after its file appears, and a loaded machine acknowledged
        # events in between, which the copy rightly does not hold.
        before = sender.acknowledged_before(began)
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
