"""`make run`, the README's first command, serves where the HERALD_* environment says."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_run_takes_its_port_and_database_from_the_environment(tmp_path: Path) -> None:
    if not (Path(sys.prefix) / ".installed").exists():
        pytest.skip(f"{sys.prefix} is not a virtualenv the Makefile installed: run `make test`")
    port = free_port()
    database = tmp_path / "elsewhere.db"
    env = herald_environment(
        HERALD_PORT=str(port),
        HERALD_DATABASE_URL=f"sqlite:///{database}",
        HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"),
    )
    with HeraldProcess("make-run", log_dir=tmp_path) as server:
        server.start(
            ["--no-print-directory", "run", f"VENV={sys.prefix}"],
            env,
            cwd=REPOSITORY,
            command=["make"],
        )
        server.wait_healthy(f"http://127.0.0.1:{port}/readyz")
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()

    assert ready["status"] == "ready"
    assert database.exists()
