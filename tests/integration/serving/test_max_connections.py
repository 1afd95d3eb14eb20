"""`herald serve --max-connections N` as an operator runs it: each API process keeps at
most N connections open, answers one more `503` and counts it in
`herald_connections_refused_total`; and it starts only where the process may open as
many files as N connections need."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from herald.cli.descriptors import OWN_DESCRIPTORS
from tests.support.ports import free_port
from tests.support.processes import (
    HeraldProcess,
    herald_command,
    herald_environment,
    run_herald,
    wait_for,
)
from tests.support.serving import one_line, sqlite_url


def _connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(5)
    return connection


@contextmanager
def _serving(
    tmp_path: Path, name: str, options: list[str], command: list[str] | None = None
) -> Iterator[tuple[HeraldProcess, int]]:
    """A `herald serve` with ``options``, ready; and its port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["serve", "--port", str(port), "--database", sqlite_url(tmp_path), *options]
    env = herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"))
    with HeraldProcess(name, log_dir=tmp_path) as server:
        server.start(args, env=env, cwd=tmp_path, command=command)
        server.wait_healthy(base + "/readyz")
        yield server, port


def _refused_count(base: str) -> float | None:
    """The count a scrape shows; None while the scrape itself is refused (the server
    notes closed connections a moment after their clients close them)."""
    scraped = httpx.get(base + "/metrics", timeout=5)
    if scraped.status_code == 503:
        return None
    [count] = re.findall(r"^herald_connections_refused_total (\S+)$", scraped.text, re.M)
    return float(count)


def test_serve_answers_503_past_its_cap_and_counts_the_refused(tmp_path: Path) -> None:
    with _serving(tmp_path, "capped", ["--max-connections", "3"]) as (_server, port):
        base = f"http://127.0.0.1:{port}"
        assert _refused_count(base) == 0

        with ExitStack() as held:
            for _ in range(3):
                held.enter_context(_connect(port))
            for _ in range(2):
                with _connect(port) as extra:
                    answer = extra.recv(4096)
                    assert answer.startswith(b"HTTP/1.1 503 "), answer
                    assert b"\r\nretry-after: 1\r\n" in answer

        # Once they are closed, a scrape is a connection like another: served again.
        assert wait_for(lambda: _refused_count(base) == 2, "the refusals counted") is True


def test_each_api_process_of_several_keeps_to_the_cap(tmp_path: Path) -> None:
    # The cap reaches the API processes uvicorn starts through the config it hands them:
    # two of them, capped at 2 each, cannot hold 5 connections between them.
    options = ["--workers", "2", "--max-connections", "2"]
    with _serving(tmp_path, "capped-workers", options) as (_server, port):
        base = f"http://127.0.0.1:{port}"

        with ExitStack() as held:
            connections = [held.enter_context(_connect(port)) for _ in range(5)]
            answers = []
            for connection in connections:
                connection.settimeout(1)
                try:
                    answers.append(connection.recv(4096))
                except TimeoutError:
                    answers.append(b"")  # held open, waiting for its request
        refused = [answer for answer in answers if answer.startswith(b"HTTP/1.1 503 ")]

        assert all(answer == b"" or answer in refused for answer in answers), answers
        assert answers.count(b"") <= 4  # held open: two by each process at most
        assert wait_for(lambda: _refused_count(base) == len(refused), "the refusals summed") is True


def test_serve_refuses_a_cap_the_open_files_limit_cannot_hold(tmp_path: Path) -> None:
    result = run_herald(
        ["serve", "--port", str(free_port()), "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_MAX_CONNECTIONS="2000"),
        cwd=tmp_path,
        prefix=["prlimit", "--nofile=1024:1024"],
    )

    assert result.returncode == 1, result.stderr
    message = one_line(result.stderr)
    assert "HERALD_MAX_CONNECTIONS (--max-connections) is 2,000" in message
    assert "may open at most 1,024" in message
    assert not (tmp_path / "herald.db").exists()


def test_serve_raises_its_open_files_limit_within_the_hard_one(tmp_path: Path) -> None:
    needed = 600 + OWN_DESCRIPTORS
    limited = ["prlimit", "--nofile=500:4096", *herald_command()]
    with _serving(tmp_path, "raised", ["--max-connections", "600"], limited) as (server, _port):
        limits = Path(f"/proc/{server.pid}/limits").read_text()

        assert f"open files limit raised from 500 to {needed}" in one_line(server.output())
        assert re.search(rf"^Max open files\s+{needed}\s+4096\s", limits, re.M), limits
