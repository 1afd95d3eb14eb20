"""The folder where a server's API processes share their counts goes with the server, and
one left by a server killed outright goes when the next server starts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from herald.observability.shared_metrics import FOLDER_VARIABLE, metrics_shared_by


def test_a_server_s_folder_goes_with_it_and_those_of_servers_killed_go_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    killed = tmp_path / f"herald-metrics-{gone.stdout.strip()}-a1b2"  # its server is gone
    running = tmp_path / f"herald-metrics-{os.getpid()}-c3d4"  # this process's
    unnamed = tmp_path / "herald-metrics-x9y8"  # of a server that did not name itself
    for folder in (killed, running, unnamed):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"")

    with metrics_shared_by(2):
        shared = Path(os.environ[FOLDER_VARIABLE])
        assert shared.parent == tmp_path and shared.is_dir()
        assert not killed.exists()
        assert running.exists() and unnamed.exists()

    assert not shared.exists() and FOLDER_VARIABLE not in os.environ
