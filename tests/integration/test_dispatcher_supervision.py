"""How `herald serve` keeps its dispatcher process: restarted with a growing delay when it
keeps failing, and stopped at once, even mid-delay or when it ignores SIGTERM."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from herald.cli.dispatcher_process import DispatcherProcess
from tests.support.processes import wait_for

# Generous: these bound waits for something that happens, never how fast it happens.
PATIENCE_S = 30.0
RESTARTING = re.compile(r"exited with code (-?\d+); starting another in ([\d.]+) s")


def child(script: str, starts: Path) -> list[str]:
    """A stand-in dispatcher: runs ``script``, which notes its start in ``starts``."""
    return [
        sys.executable,
        "-c",
        script.replace("NOTE_START", f"open({str(starts)!r}, 'a').write('x')"),
    ]


def count(starts: Path) -> int:
    return len(starts.read_text()) if starts.exists() else 0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, what, timeout=PATIENCE_S)


def restarts(caplog: pytest.LogCaptureFixture) -> list[tuple[int, float]]:
    """(exit code, announced delay) of each restart the supervisor logged."""
    found = [RESTARTING.search(record.getMessage()) for record in caplog.records]
    return [(int(match[1]), float(match[2])) for match in found if match]


def test_a_failing_dispatcher_is_restarted_with_a_growing_delay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    supervisor = DispatcherProcess(
        command=child("NOTE_START\nraise SystemExit(3)", starts),
        restart_after_s=0.05,
        max_restart_after_s=0.2,
    )
    with caplog.at_level(logging.ERROR, logger="herald.dispatcher"), supervisor:
        wait_until(lambda: len(restarts(caplog)) >= 4, "four restarts")

    # Doubling from the first delay, then held at the longest: never a tight loop.
    assert restarts(caplog)[:4] == [(3, 0.05), (3, 0.1), (3, 0.2), (3, 0.2)]
    assert count(starts) >= 4  # each restart started the command again


def test_stopping_during_a_restart_delay_is_immediate_and_starts_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    supervisor = DispatcherProcess(
        command=child("NOTE_START\nraise SystemExit(1)", starts), restart_after_s=60.0
    )
    with caplog.at_level(logging.ERROR, logger="herald.dispatcher"), supervisor:
        wait_until(lambda: restarts(caplog) == [(1, 60.0)], "the 60 s restart delay begins")
        began = time.monotonic()
    # stop() returned with the supervising thread joined: nothing can start after this.
    assert time.monotonic() - began < PATIENCE_S  # not the rest of the 60 s delay
    assert count(starts) == 1


def test_a_dispatcher_that_ignores_sigterm_is_killed_after_the_stop_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    # The start is noted only once SIGTERM is ignored, so stopping meets a stubborn child.
    stubborn = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "NOTE_START\n"
        "time.sleep(600)"
    )
    supervisor = DispatcherProcess(command=child(stubborn, starts), stop_timeout_s=0.5)
    with caplog.at_level(logging.ERROR, logger="herald.dispatcher"), supervisor:
        wait_until(lambda: count(starts) == 1, "the child ignores SIGTERM")
        began = time.monotonic()
    took = time.monotonic() - began

    assert "the dispatcher process did not stop in time; killing it" in caplog.messages
    assert 0.5 <= took < PATIENCE_S  # it waited its stop timeout, then killed; not 600 s
    assert count(starts) == 1


def test_a_dispatcher_that_cannot_be_started_is_tried_again_not_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The supervising thread died with the error, and the server went on accepting
    # events that nothing would ever deliver.
    starts = tmp_path / "starts"
    command = child("NOTE_START\nimport time\ntime.sleep(60)", starts)
    missing = tmp_path / "no-such-python"
    supervisor = DispatcherProcess(command=[str(missing), *command[1:]], restart_after_s=0.05)
    with caplog.at_level(logging.ERROR, logger="herald.dispatcher"), supervisor:
        wait_until(
            lambda: sum("could not be started" in r.getMessage() for r in caplog.records) >= 2,
            "two failed starts, each logged",
        )
        missing.symlink_to(sys.executable)  # the interpreter is back
        wait_until(lambda: count(starts) == 1, "the dispatcher starts once it can")


def test_a_dispatcher_killed_by_a_signal_is_said_to_have_been_killed_by_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The line said "exited with code -9": no process exits with that code, and an
    # operator looking for the out-of-memory killer's SIGKILL would not find it.
    starts = tmp_path / "starts"
    supervisor = DispatcherProcess(
        command=child(
            "NOTE_START\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)", starts
        ),
        restart_after_s=60.0,
    )
    said = "the dispatcher process was killed by SIGKILL; starting another in 60 s"
    with caplog.at_level(logging.ERROR, logger="herald.dispatcher"), supervisor:
        wait_until(lambda: said in caplog.messages, "the restart is announced")
