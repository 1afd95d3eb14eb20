"""`herald serve --workers N`: a scrape of `/metrics`, whichever API process answers it,
shows the counts of all of them."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.test_dispatcher_process import post_signup, start_server
from tests.e2e.test_worker_metrics import scrape_until
from tests.support.ports import free_port

EVENTS = 24
ACCEPTED = 'herald_events_total{event_type="signup_completed",status="accepted"}'


def scraped_count(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_every_api_process_serves_the_events_all_of_them_received(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    metrics_port = free_port()
    server, base = start_server(
        tmp_path,
        "--workers",
        "2",
        HERALD_METRICS_PORT=str(metrics_port),
        TMPDIR=str(temporary),
    )
    try:
        # Each request on a connection of its own, so both processes take some of them.
        for n in range(EVENTS):
            post_signup(base, f"u_{n}")
        # Each scrape too: the process answering it is the one that accepts it.
        counts = [
            scraped_count(httpx.get(f"{base}/metrics", timeout=5).text, ACCEPTED) for _ in range(12)
        ]
        assert counts == [EVENTS] * 12
        # The dispatcher process counts its deliveries apart and serves them on its port.
        scrape_until(
            f"http://127.0.0.1:{metrics_port}/metrics",
            f'herald_deliveries_total{{channel="email",status="sent"}} {EVENTS}.0',
        )
        assert "herald_deliveries_total" not in httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        server.stop()
    assert list(temporary.iterdir()) == []  # the processes' count files went with them
