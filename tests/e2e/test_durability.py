"""A real server process: concurrent requests, kill -9, restart. Nothing acknowledged is lost,
no limit is broken, and messages left pending by the crash are delivered after it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, wait_for

pytestmark = pytest.mark.slow


def signup(user: str, n: int) -> dict[str, object]:
    return {
        "event_id": f"{user}-signup-{n}",
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": f"2025-11-03T10:00:{n % 60:02d}Z",
        "user_traits": {"email": f"{user}@example.com", "marketing_opt_in": True},
    }


def start(tmp_path: Path, name: str, *extra: str) -> tuple[HeraldProcess, str]:
    port = free_port()
    env = herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"))
    server = HeraldProcess(name, log_dir=tmp_path)
    database = f"sqlite:///{tmp_path / 'herald.db'}"
    server.start(
        ["serve", "--port", str(port), "--database", database, *extra], env=env, cwd=tmp_path
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_healthy(url + "/readyz")
    return server, url


def sent_message_ids(tmp_path: Path) -> list[str]:
    outbox = tmp_path / "outbox.jsonl"
    if not outbox.exists():
        return []
    return [json.loads(line)["message_id"] for line in outbox.read_text().splitlines()]


def test_parallel_signups_of_one_user_yield_one_welcome_email(tmp_path: Path) -> None:
    server, url = start(tmp_path, "api")
    try:
        with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda n: client.post("/events", json=signup("u_race", n)), range(64))
            )
        assert {a.status_code for a in answers} == {202}
        outcomes = [a.json()["decisions"][0]["outcome"] for a in answers]
        assert outcomes.count("triggered") == 1 and outcomes.count("suppressed") == 63
        deadline = time.monotonic() + 10
        while len(sent_message_ids(tmp_path)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    assert len(sent_message_ids(tmp_path)) == 1


def test_a_killed_server_loses_nothing_it_acknowledged_and_delivers_after_restart(
    tmp_path: Path,
) -> None:
    server, url = start(tmp_path, "first", "--no-dispatcher")
    acknowledged: list[str] = []
    stop_sending = threading.Event()

    def send(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            for n in range(10_000):
                if stop_sending.is_set():
                    return
                event = signup(f"u_{worker}_{n}", n)
                try:
                    answer = client.post("/events", json=event)
                except httpx.HTTPError:
                    return  # the server died under us: this one was never acknowledged
                if answer.status_code == 202:
                    acknowledged.append(str(event["event_id"]))

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acknowledged) > 200, "the server acknowledges events", timeout=30)
        assert server.pid is not None
        os.killpg(server.pid, signal.SIGKILL)  # kill -9, mid-load
    finally:
        stop_sending.set()
        for thread in threads:
            thread.join(10)
        server.stop()

    with sqlite3.connect(tmp_path / "herald.db") as db:
        stored = {row[0] for row in db.execute("SELECT event_id FROM events")}
        pending = db.execute("SELECT count(*) FROM messages WHERE status = 'pending'").fetchone()[0]
    assert set(acknowledged) <= stored
    assert pending >= len(acknowledged)  # the welcome emails, not delivered yet

    server, url = start(tmp_path, "second")
    try:
        deadline = time.monotonic() + 30
        while len(sent_message_ids(tmp_path)) < pending and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.stop()
    sent = sent_message_ids(tmp_path)
    assert len(sent) == pending and len(set(sent)) == len(sent)
