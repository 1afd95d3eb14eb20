"""`make clean` removes what `make run` made, and nothing an operator put beside it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_keeps_a_backup_named_after_the_database(tmp_path: Path) -> None:
    # It removed herald.db-*, and with it `herald db backup herald.db-before-upgrade`.
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    made = ["herald.db", "herald.db-wal", "herald.db-shm", "outbox.jsonl"]
    kept = ["herald.db-before-upgrade", "herald.db.bak", "rules.yaml"]
    for name in made + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / ".venv").mkdir()

    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True)

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*kept, "Makefile"])
