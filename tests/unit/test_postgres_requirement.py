"""What `make test` does with PostgreSQL out of reach, as the README says: its tests skip
and say why, except under `CI=true`, where that is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import refused_port

REPOSITORY = Path(__file__).resolve().parents[2]
# One PostgreSQL test that needs nothing else.
A_POSTGRES_TEST = (
    "tests/integration/api/test_preferences.py::"
    "test_a_preference_for_an_id_no_event_could_carry_is_refused[postgresql]"
)


def run_without_postgres(ci: str) -> subprocess.CompletedProcess[str]:
    with refused_port() as port:
        env = {
            **os.environ,
            "CI": ci,
            "HERALD_TEST_POSTGRES_URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
        }
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", A_POSTGRES_TEST],
            cwd=REPOSITORY,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.parametrize("ci", ["", "false", "0"])
def test_out_of_ci_an_unreachable_postgres_skips_its_tests_saying_why(ci: str) -> None:
    result = run_without_postgres(ci)

    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and "PostgreSQL unreachable" in result.stdout


def test_under_ci_true_an_unreachable_postgres_is_a_failure() -> None:
    result = run_without_postgres("true")

    assert result.returncode == 1, result.stdout
    assert "CI must test PostgreSQL" in result.stdout
