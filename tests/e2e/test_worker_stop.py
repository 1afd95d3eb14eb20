"""Stopping `herald worker`: the first Ctrl-C lets the sends under way finish, a second
one stops it at once; stopped either way, a dispatcher closes its providers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from herald.rules.loader import default_rules_path
from tests.e2e.test_worker_metrics import database_with_welcome_emails
from tests.support.http_receiver import CannedResponse, HttpReceiver
from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, wait_for
from tests.support.smtp_sink import SmtpSink

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


def rules_sending_email_to(tmp_path: Path, provider: str) -> Path:
    """The packaged rules, with ``provider`` (a YAML mapping) for the email channel."""
    rules = tmp_path / "rules.yaml"
    text = default_rules_path().read_text(encoding="utf-8")
    rules.write_text(f"{text}\nproviders:\n  email: {provider}\n", encoding="utf-8")
    (tmp_path / "templates").symlink_to(default_rules_path().parent / "templates")
    return rules


@pytest.mark.parametrize(
    ("command", "stop"),
    [
        (["worker"], signal.SIGTERM),
        (["worker"], signal.SIGINT),
        # Its dispatcher process, which the server asks to stop in turn.
        (["serve"], signal.SIGINT),
        # The server's own event loop delivering: it says its stop as a dispatcher does.
        (["serve", "--dispatcher-inline"], signal.SIGTERM),
        (["serve", "--dispatcher-inline"], signal.SIGINT),
    ],
    ids=[
        "worker-sigterm",
        "worker-ctrl-c",
        "serve-ctrl-c",
        "serve-inline-sigterm",
        "serve-inline-ctrl-c",
    ],
)
def test_a_stopped_dispatcher_says_goodbye_to_its_smtp_relay(
    tmp_path: Path, command: list[str], stop: signal.Signals
) -> None:
    """The connection kept open for the next email is closed with QUIT: a relay logs one
    dropped without it as a lost session, and counts it against the sender. The stop is
    said before and after, by a server delivering inline too."""
    url = database_with_welcome_emails(tmp_path / "herald.db", users=1)
    with SmtpSink() as sink:
        smtp = f"{{type: smtp, host: {sink.host}, port: {sink.port}, sender: h@example.com}}"
        rules = rules_sending_email_to(tmp_path, smtp)
        if command[0] == "serve":
            command = [*command, "--port", str(free_port())]
        with HeraldProcess(command[0], log_dir=tmp_path) as herald:
            herald.start(
                [*command, "--database", url, "--rules", str(rules)],
                herald_environment(),
                cwd=tmp_path,
            )
            wait_for(lambda: len(sink.messages) == 1, "the welcome email", timeout=30)
            assert herald.pid is not None and sink.quits == 0  # kept for the next email

            os.kill(herald.pid, stop)
            herald.wait(timeout=30)
            said = herald.output()

        wait_for(lambda: sink.quits == 1, "the relay to be told QUIT")
        assert sink.connections == 1
    # Said whole, or an operator waiting in silence kills the process in mid-send.
    assert FINISHING in said
    assert said.index(FINISHING) < said.index("stopped: the sends under way were recorded")
    # uvicorn, stopping an API process, waits for the sends whatever it is sent next.
    promised = "Ctrl-C again stops at once" in said
    assert promised == ("--dispatcher-inline" not in command)
