"""`herald serve` delivers from a dispatcher process of its own: started with the server,
started again when it dies, and never outliving the server."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.events import opted_in_signup
from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, run_herald, wait_for

DISPATCHER_LINE = re.compile(r"dispatcher \S+:(\d+)-[0-9a-f]+ on ")


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    wait_for(check, what, timeout)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def dispatcher_pids(server: HeraldProcess) -> list[int]:
    """The dispatcher processes ``server`` started, by the pids their start lines name (an
    inline dispatcher names the server's own)."""
    named = [int(pid) for pid in DISPATCHER_LINE.findall(server.output())]
    return [pid for pid in named if pid != server.pid]


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def post_signup(base: str, user: str) -> None:
    event = opted_in_signup(user)
    body = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "event_type": event.event_type,
        "event_timestamp": event.timestamp.isoformat(),
        "user_traits": dict(event.user_traits),
    }
    assert httpx.post(f"{base}/events", json=body, timeout=10).status_code == 202


def start_server(tmp_path: Path, *args: str, **env: str) -> tuple[HeraldProcess, str]:
    port = free_port()
    server = HeraldProcess("serve", log_dir=tmp_path)
    server.start(
        ["serve", "--port", str(port), "--database", f"sqlite:///{tmp_path / 'herald.db'}", *args],
        herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"), **env),
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    server.wait_healthy(f"{base}/readyz")
    return server, base


def test_serve_delivers_from_a_dispatcher_process_and_starts_another_when_it_dies(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    metrics_port = free_port()
    server, base = start_server(tmp_path, HERALD_METRICS_PORT=str(metrics_port))
    try:
        assert "delivery by a dispatcher process" in server.output()
        server.wait_until(lambda: len(dispatcher_pids(server)) == 1, "the dispatcher to start")
        [first] = dispatcher_pids(server)
        assert first != server.pid
        # Where messages go, said as delivery starts: a new user finds the stub's file.
        server.wait_for_output(f"delivering email: stub, {outbox}; sms: stub, {outbox}; ")

        post_signup(base, "u1")
        eventually(lambda: lines(outbox) == 1, "the welcome email is sent")
        # The delivery counters are the dispatcher process's, at HERALD_METRICS_PORT.
        counters = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'herald_deliveries_total{channel="email",status="sent"} 1.0' in counters

        os.kill(first, signal.SIGKILL)
        server.wait_for_output("the dispatcher process was killed by SIGKILL; starting another")
        server.wait_until(lambda: len(dispatcher_pids(server)) == 2, "another dispatcher to start")
        second = dispatcher_pids(server)[1]

        post_signup(base, "u2")
        eventually(lambda: lines(outbox) == 2, "the next email is sent by the new dispatcher")
    finally:
        server.stop()
    assert server.output().count("Finished server process") == 1
    eventually(lambda: not alive(second), "the dispatcher stops with the server", timeout=5)
    # Said after the server's last line, so that no one kills the dispatcher mid-send.
    assert "stopping: the sends under way finish and are recorded first" in server.output()


def test_a_server_killed_outright_takes_its_dispatcher_process_with_it(tmp_path: Path) -> None:
    server, _ = start_server(tmp_path)
    try:
        server.wait_until(lambda: len(dispatcher_pids(server)) == 1, "the dispatcher to start")
        [dispatcher] = dispatcher_pids(server)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        eventually(lambda: not alive(dispatcher), "the orphaned dispatcher stops", timeout=5)
        assert "the server that started this dispatcher is gone; stopping" in server.output()
    finally:
        server.stop()


def test_an_inline_dispatcher_delivers_from_the_server_itself(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    server, base = start_server(tmp_path, "--dispatcher-inline")
    try:
        assert "delivery in the API" in server.output()
        post_signup(base, "u1")
        eventually(lambda: lines(outbox) == 1, "the welcome email is sent")
        assert dispatcher_pids(server) == []
        assert [int(pid) for pid in DISPATCHER_LINE.findall(server.output())] == [server.pid]
    finally:
        server.stop()


def test_an_inline_dispatcher_serves_its_delivery_counters_on_the_metrics_port_too(
    tmp_path: Path,
) -> None:
    """The scrape target a dispatcher process would serve stays where the operator put
    it when delivery moves onto the API's event loop."""
    outbox = tmp_path / "outbox.jsonl"
    metrics_port = free_port()
    server, base = start_server(
        tmp_path, "--dispatcher-inline", HERALD_METRICS_PORT=str(metrics_port)
    )
    try:
        post_signup(base, "u1")
        eventually(lambda: lines(outbox) == 1, "the welcome email is sent")

        counters = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'herald_deliveries_total{channel="email",status="sent"} 1.0' in counters
        assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in server.output()
    finally:
        server.stop()


def test_a_server_that_delivers_nothing_says_it_leaves_the_metrics_port_alone(
    tmp_path: Path,
) -> None:
    """A deployment sharing its variables between `herald serve --no-dispatcher` and
    `herald worker` sets HERALD_METRICS_PORT for both: the worker's to serve."""
    metrics_port = free_port()
    server, _base = start_server(tmp_path, "--no-dispatcher", HERALD_METRICS_PORT=str(metrics_port))
    try:
        assert "HERALD_METRICS_PORT is not served: this server delivers nothing" in (
            server.output()
        )
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    finally:
        server.stop()


def test_inline_dispatchers_in_several_api_processes_refuse_one_metrics_port(
    tmp_path: Path,
) -> None:
    port = free_port()
    result = run_herald(
        ["serve", "--dispatcher-inline", "--workers", "2", "--port", str(port)],
        env=herald_environment(HERALD_METRICS_PORT=str(free_port())),
        cwd=tmp_path,
    )

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: HERALD_METRICS_PORT cannot serve 2 API processes")
    assert not (tmp_path / "herald.db").exists()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_api_processes_of_a_server_killed_outright_stop_and_free_the_port(
    tmp_path: Path,
) -> None:
    """Left serving, they would keep the port: a restarted server could not bind it."""
    server, base = start_server(tmp_path, "--workers", "2", "--no-dispatcher")
    try:
        assert server.pid is not None
        server.wait_until(lambda: len(children(server.pid or 0)) >= 2, "the API processes to start")
        api_processes = children(server.pid)
        os.kill(server.pid, signal.SIGKILL)
        eventually(
            lambda: not any(alive(pid) for pid in api_processes),
            "the orphaned API processes stop",
            timeout=10,
        )
        assert "the herald serve process that started this API process is gone" in server.output()
    finally:
        server.stop()
    port = base.rsplit(":", 1)[1]
    restarted = HeraldProcess("restarted", log_dir=tmp_path)
    try:
        restarted.start(
            ["serve", "--port", port, "--database", f"sqlite:///{tmp_path / 'herald.db'}"],
            herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl")),
            cwd=tmp_path,
        )
        restarted.wait_healthy(f"{base}/readyz")  # on the same port
        post_signup(base, "u_after")
    finally:
        restarted.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_server_stopped_with_sigterm_exits_0_with_one_api_process_or_several(
    tmp_path: Path, workers: str
) -> None:
    """A deployment stops it with SIGTERM: an exit status of 143 is a failure to systemd,
    which then marked the service failed at each stop of a single-process server."""
    server, _base = start_server(tmp_path, "--workers", workers)
    try:
        server.wait_until(lambda: len(dispatcher_pids(server)) == 1, "the dispatcher to start")
        assert server.pid is not None
        os.kill(server.pid, signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert "stopped: the sends under way were recorded" in server.output()
    finally:
        server.stop()
