"""Stopping `herald worker`: the first Ctrl-C lets the sends under way finish, a second
one stops it at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from herald.rules.loader import default_rules_path
from tests.e2e.test_worker_metrics import database_with_welcome_emails
from tests.support.http_receiver import CannedResponse, HttpReceiver
from tests.support.processes import HeraldProcess, herald_environment, wait_for

FINISHING = "stopping: the sends under way finish and are recorded first"


def test_a_second_ctrl_c_stops_a_worker_waiting_on_its_sends_at_once(tmp_path: Path) -> None:
    url = database_with_welcome_emails(tmp_path / "herald.db", users=1)
    # The receiver holds the welcome email's request far longer than the test waits.
    with HttpReceiver(default=CannedResponse(200, delay=60)) as receiver:
        rules = tmp_path / "rules.yaml"
        text = default_rules_path().read_text(encoding="utf-8")
        webhook = f"providers:\n  email: {{type: webhook, url: '{receiver.url}'}}\n"
        rules.write_text(f"{text}\n{webhook}", encoding="utf-8")
        (tmp_path / "templates").symlink_to(default_rules_path().parent / "templates")
        with HeraldProcess("worker", log_dir=tmp_path) as worker:
            worker.start(
                ["worker", "--database", url, "--rules", str(rules)],
                herald_environment(),
                cwd=tmp_path,
            )
            wait_for(lambda: len(receiver.requests) == 1, "the send starts", timeout=30)
            assert worker.pid is not None

            os.kill(worker.pid, signal.SIGINT)
            worker.wait_for_output(FINISHING)
            assert worker.running  # waiting for the send, as it said
            os.kill(worker.pid, signal.SIGINT)

            assert worker.wait(timeout=10) == 130
            assert "stopped at once: the messages it was sending may have gone out" in (
                worker.output()
            )
