"""`herald serve --workers N` on PostgreSQL through an outage of the database, made by
cutting a TCP proxy between Herald and the server (which other tests share, and which
must not be stopped)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.events import signup_payload
from tests.support.ports import free_port
from tests.support.processes import (
    HeraldProcess,
    herald_environment,
    run_herald,
    scratch_postgres_database,
)
from tests.support.tcp_proxy import proxied

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STARTED = "Application startup complete."
FAILED = "Application startup failed."


def api_processes(server_pid: int) -> list[int]:
    """The uvicorn API processes of the ``herald serve`` process ``server_pid`` (not
    multiprocessing's resource tracker, its other child)."""
    found = []
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    for child in children:
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in command:
            found.append(int(child))
    return found


def test_an_api_process_restarted_during_an_outage_does_not_stop_the_server(
    postgres_url: str, tmp_path: Path
) -> None:
    """One of the API processes dies (the kernel's OOM killer, say) while the database is
    away; uvicorn starts another. That one must not fail its start-up for the outage:
    uvicorn then stopped the whole server, the API process that was answering 503s
    through the outage included, and nothing answered once the database was back."""
    with (
        scratch_postgres_database(postgres_url) as direct_url,
        proxied(direct_url) as (
            proxy,
            url,
        ),
    ):
        env = herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"))
        upgraded = run_herald(["db", "upgrade", "--database", direct_url], env=env, cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with HeraldProcess("api", log_dir=tmp_path) as api:
            api.start(
                ["serve", "--port", str(port), "--workers", "2", "--no-dispatcher"],
                {**env, "HERALD_DATABASE_URL": url},
                cwd=tmp_path,
            )
            api.wait_healthy(f"{base}/readyz")
            assert api.pid is not None
            api.wait_until(lambda: api.output().count(STARTED) == 2, "both API processes to start")
            victim = api_processes(api.pid)[0]

            proxy.cut()
            outage = httpx.post(f"{base}/events", json=signup_payload("u1"))
            assert outage.status_code == 503
            os.kill(victim, signal.SIGKILL)
            api.wait_until(
                lambda: api.output().count(STARTED) + api.output().count(FAILED) == 3,
                "the replacement API process's start-up to end",
            )
            time.sleep(1)  # uvicorn's supervisor looks at its processes every 0.5 s
            assert api.running, api.output()
            assert "the database cannot be reached to check its schema" in api.output()

            proxy.restore()
            for _ in api_processes(api.pid):  # each of the two answers, in turn
                api.wait_healthy(f"{base}/readyz")
            accepted = httpx.post(f"{base}/events", json=signup_payload("u1"))
            assert accepted.status_code == 202, accepted.text
