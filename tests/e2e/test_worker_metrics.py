"""`herald worker` serves no API, but its delivery counters and the outbox gauges are
scraped from it with `--metrics-port`, as from the API's /metrics."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from herald.rules.loader import default_rules_path, load_ruleset
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import UnitOfWork
from tests.support.events import opted_in_signup
from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, run_herald


def database_with_welcome_emails(path: Path, users: int) -> str:
    url = f"sqlite:///{path}"
    database = Database(url)
    upgrade(database)
    signups = [opted_in_signup(f"u{n}") for n in range(users)]
    with UnitOfWork(database) as uow:
        ingest(uow, signups, load_ruleset(), now=datetime(2025, 11, 3, 12, tzinfo=UTC))
        uow.commit()
    database.dispose()
    return url


def scrape_until(url: str, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=2.0).text
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"no {needle!r} at {url} after {timeout}s:\n{text}")


def test_a_worker_serves_its_delivery_counters_and_the_outbox_gauges(tmp_path: Path) -> None:
    url = database_with_welcome_emails(tmp_path / "herald.db", users=3)
    port = free_port()
    with HeraldProcess("worker", log_dir=tmp_path) as worker:
        worker.start(
            ["worker", "--database", url, "--metrics-port", str(port)],
            herald_environment(),
            cwd=tmp_path,
        )
        worker.wait_for_output(f"metrics on http://127.0.0.1:{port}/metrics")
        metrics = f"http://127.0.0.1:{port}/metrics"
        text = scrape_until(metrics, 'herald_deliveries_total{channel="email",status="sent"} 3.0')
        assert "herald_outbox_backlog 0.0" in text
        # It ingests nothing: no event counters or commit sizes stuck at zero.
        assert "herald_events_total" not in text
        assert "herald_commit_events" not in text


def test_a_worker_counts_alone_whatever_prometheus_folder_its_environment_names(
    tmp_path: Path,
) -> None:
    """prometheus_client sums the counts of every process that wrote to the folder
    PROMETHEUS_MULTIPROC_DIR names: set in the environment of two workers (as guides to
    prometheus_client have it set), each served the deliveries of both, so the sum
    Prometheus made of them counted each twice, and a worker restarted served those of
    its predecessors."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = herald_environment(PROMETHEUS_MULTIPROC_DIR=str(folder))
    busy = database_with_welcome_emails(tmp_path / "busy.db", users=3)
    idle = database_with_welcome_emails(tmp_path / "idle.db", users=0)
    busy_port, idle_port = free_port(), free_port()
    with (
        HeraldProcess("busy-worker", log_dir=tmp_path) as busy_worker,
        HeraldProcess("idle-worker", log_dir=tmp_path) as idle_worker,
    ):
        busy_worker.start(
            ["worker", "--database", busy, "--metrics-port", str(busy_port)], env, cwd=tmp_path
        )
        idle_worker.start(
            ["worker", "--database", idle, "--metrics-port", str(idle_port)], env, cwd=tmp_path
        )
        busy_worker.wait_for_output(f"metrics on http://127.0.0.1:{busy_port}/metrics")
        idle_worker.wait_for_output(f"metrics on http://127.0.0.1:{idle_port}/metrics")
        sent = 'herald_deliveries_total{channel="email",status="sent"}'
        scrape_until(f"http://127.0.0.1:{busy_port}/metrics", f"{sent} 3.0")
        idle_text = scrape_until(f"http://127.0.0.1:{idle_port}/metrics", "herald_database_up")

    assert sent not in idle_text  # it sent nothing


@pytest.mark.parametrize(
    ("command", "chosen_by"),
    [
        (["worker", "--metrics-port", "{port}"], "--metrics-port or HERALD_METRICS_PORT"),
        (["serve", "--port", "0"], "HERALD_METRICS_PORT"),
    ],
    ids=["worker", "serve"],
)
def test_a_metrics_port_already_taken_is_refused_in_one_line_before_anything_runs(
    tmp_path: Path, command: list[str], chosen_by: str
) -> None:
    """`herald serve` hands the port to its dispatcher process: taken, that process would
    fail and be restarted for ever while the API went on taking events."""
    url = database_with_welcome_emails(tmp_path / "herald.db", users=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_herald(
            [*(part.format(port=port) for part in command), "--database", url],
            env=herald_environment(HERALD_METRICS_PORT=str(port)),
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use; choose "
        f"another with {chosen_by}"
    )
    assert "Traceback" not in done.stderr


def test_a_worker_with_a_rate_limit_says_once_that_the_rate_is_its_own(tmp_path: Path) -> None:
    url = database_with_welcome_emails(tmp_path / "herald.db", users=1)
    rules = tmp_path / "rules.yaml"
    text = default_rules_path().read_text(encoding="utf-8")
    rules.write_text(text + "\ndelivery: {rate_limits: {sms: 10}}\n", encoding="utf-8")
    (tmp_path / "templates").symlink_to(default_rules_path().parent / "templates")
    note = "rate limits are this process's own: sms 10/s"
    with HeraldProcess("worker", log_dir=tmp_path) as worker:
        worker.start(
            ["worker", "--database", url, "--rules", str(rules)], herald_environment(), cwd=tmp_path
        )
        worker.wait_for_output(note)
        worker.wait_for_output("round of 1 message(s): 1 sent")  # a round later, still once

        assert worker.output().count(note) == 1
