"""How `herald serve` keeps its dispatcher process: restarted with a growing delay when it
keeps failing, and stopped at once, even mid-delay or when it ignores SIGTERM."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

from herald.cli.dispatcher_process import DispatcherProcess


def child(script: str, starts: Path) -> list[str]:
    """A stand-in dispatcher: notes each start in ``starts``, then runs ``script``."""
    note = f"open({str(starts)!r}, 'a').write('x')\n"
    return [sys.executable, "-c", note + script]


def count(starts: Path) -> int:
    return len(starts.read_text()) if starts.exists() else 0


def test_a_failing_dispatcher_is_restarted_with_a_growing_delay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    supervisor = DispatcherProcess(
        command=child("raise SystemExit(3)", starts),
        restart_after_s=0.1,
        max_restart_after_s=0.4,
    )
    with caplog.at_level(logging.ERROR, logger="herald.dispatcher"), supervisor:
        time.sleep(2.0)
    # Delays of 0.1, 0.2, 0.4, 0.4, ... s: about seven starts in 2 s, not one per
    # process start-up time (dozens), and not just the first.
    assert 3 <= count(starts) <= 9
    messages = [record.getMessage() for record in caplog.records]
    assert "the dispatcher process exited with code 3; starting another in 0.1 s" in messages
    assert all("exited with code 3" in message for message in messages)


def test_stopping_during_a_restart_delay_is_immediate_and_starts_nothing(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    supervisor = DispatcherProcess(
        command=child("raise SystemExit(1)", starts), restart_after_s=30.0
    )
    with supervisor:
        deadline = time.monotonic() + 10
        while count(starts) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # it has exited and the 30 s delay has begun
        began = time.monotonic()
    assert time.monotonic() - began < 2.0
    time.sleep(0.3)
    assert count(starts) == 1


def test_a_dispatcher_that_ignores_sigterm_is_killed_after_the_stop_timeout(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"
    supervisor = DispatcherProcess(command=child(stubborn, starts), stop_timeout_s=0.5)
    with supervisor:
        deadline = time.monotonic() + 10
        while count(starts) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # past the SIG_IGN line
        began = time.monotonic()
    assert time.monotonic() - began < 3.0
    assert count(starts) == 1
