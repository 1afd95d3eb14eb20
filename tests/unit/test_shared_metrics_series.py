"""Shared among API processes, each series is served once, summed over the processes:
served from the processes' files and, by mistake, from its own counter as well, a series
would appear twice, one line of the sum and one of this process alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Run apart: prometheus_client chooses to count in files as it is first imported.
_TWO_PROCESSES = """
from prometheus_client import generate_latest
from herald.observability.metrics import Metrics

for _process in range(2):  # two Metrics count into one folder, as two processes do
    metrics = Metrics()
    metrics.count_event("signup_completed", "accepted")
    metrics.count_many(metrics.decisions, [("WELCOME_EMAIL", "triggered")])
    metrics.observe_ingest("event", 0.002)
    metrics.observe_commit(1)
    metrics.count_delivery("email", "sent")
    metrics.observe_delivery("email", 0.02)
print(generate_latest(metrics.registry).decode())
"""


def test_each_series_is_served_once_with_the_sum_of_the_processes(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": ":".join(sys.path)}
    served = subprocess.run(
        [sys.executable, "-c", _TWO_PROCESSES], env=env, capture_output=True, text=True, check=True
    ).stdout
    samples = [line.rsplit(" ", 1) for line in served.splitlines() if line.startswith("herald_")]
    series = [name for name, _value in samples]

    assert len(series) == len(set(series)), served
    values = dict(samples)
    for name in (
        'herald_events_total{event_type="signup_completed",status="accepted"}',
        'herald_decisions_total{outcome="triggered",rule="WELCOME_EMAIL"}',
        'herald_deliveries_total{channel="email",status="sent"}',
        'herald_delivery_seconds_count{channel="email"}',
        'herald_ingest_seconds_count{endpoint="event"}',
        "herald_commit_events_count",
    ):
        assert float(values[name]) == 2.0, (name, served)
