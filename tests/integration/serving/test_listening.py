"""`herald serve` answers only whom it should and where it should: a public host needs
both tokens, a server without tokens answers only requests addressed to loopback, and a
port it cannot have is refused before it announces itself."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, run_herald
from tests.support.serving import one_line, sqlite_url

# Long enough for a server on a public host (16 characters at least).
ADMIN_TOKEN = "admin-secret-7f3a9c2e"
INGEST_TOKEN = "ingest-secret-b41d08e6"


def serve_publicly(tmp_path: Path) -> list[str]:
    """`herald serve` on every address, on a free port and a database in ``tmp_path``."""
    return [
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--database",
        sqlite_url(tmp_path),
    ]


@pytest.mark.parametrize(
    "tokens",
    [{}, {"HERALD_ADMIN_TOKEN": "a" * 32}, {"HERALD_INGEST_TOKEN": "i" * 32}],
    ids=["no token", "admin token only", "ingest token only"],
)
def test_serve_refuses_a_public_host_without_both_tokens_before_touching_anything(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    result = run_herald(
        serve_publicly(tmp_path),
        env=herald_environment(**tokens),
        cwd=tmp_path,
    )

    assert result.returncode == 2, result.stderr
    message = one_line(result.stderr)
    assert "refusing to listen on 0.0.0.0" in message
    assert "HERALD_ADMIN_TOKEN" in message and "HERALD_INGEST_TOKEN" in message
    assert not (tmp_path / "herald.db").exists()  # it stopped before opening the database


def test_serve_on_a_public_host_starts_when_both_tokens_are_set_and_guards_the_audit(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = herald_environment(HERALD_ADMIN_TOKEN=ADMIN_TOKEN, HERALD_INGEST_TOKEN=INGEST_TOKEN)
    with HeraldProcess("public", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--host", "0.0.0.0", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=env,
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/healthz")

        anonymous = httpx.get(base + "/audit/u_1", timeout=5)
        admin = httpx.get(
            base + "/audit/u_1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5
        )

        # With both tokens, any name may reach it (a proxy's, a load balancer's).
        named = httpx.get(base + "/healthz", headers={"Host": "herald.example.com"}, timeout=5)

        assert anonymous.status_code == 401
        assert admin.status_code == 404  # let in; there is no such user yet
        assert named.status_code == 200


def test_serve_with_one_api_process_ignores_a_server_pid_left_in_the_environment(
    tmp_path: Path,
) -> None:
    # HERALD_SERVER_PID is what `herald serve --workers N` hands its API processes, the
    # process they stop without. Left in the environment of a server with one process, it
    # made that process stop within a second of starting: the pid named was not running.
    gone = subprocess.Popen(["true"])
    gone.wait()
    port = free_port()
    with HeraldProcess("stray-pid", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=herald_environment(HERALD_SERVER_PID=str(gone.pid)),
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/healthz")
        time.sleep(2)  # the watch looks every half second

        assert httpx.get(base + "/healthz", timeout=5).status_code == 200
    assert "is gone; stopping" not in server.output()


def test_serve_without_tokens_answers_only_requests_addressed_to_loopback(
    tmp_path: Path,
) -> None:
    """A web page whose own name a DNS server answers with 127.0.0.1 (DNS rebinding) sends
    its requests same-origin to this server, with its own name as Host."""
    port = free_port()
    with HeraldProcess("tokenless", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=herald_environment(),
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/healthz")

        rebound = httpx.get(base + "/rules", headers={"Host": f"rebound.example:{port}"}, timeout=5)
        direct = httpx.get(base + "/rules", timeout=5)

    assert rebound.status_code == 421
    assert "DNS rebinding" in rebound.json()["detail"]
    assert direct.status_code == 200


@pytest.mark.parametrize(
    ("short", "long"),
    [("HERALD_ADMIN_TOKEN", "HERALD_INGEST_TOKEN"), ("HERALD_INGEST_TOKEN", "HERALD_ADMIN_TOKEN")],
)
def test_serve_refuses_a_public_host_with_a_token_short_enough_to_guess(
    tmp_path: Path, short: str, long: str
) -> None:
    """Nothing slows a client trying tokens over the network down: one of a few
    characters, `secret`, would be found by trying, and the audit read."""
    guessable = "s3cret-tok"
    env = herald_environment(**{short: guessable, long: "L" * 32})
    result = run_herald(
        serve_publicly(tmp_path),
        env=env,
        cwd=tmp_path,
    )

    assert result.returncode == 2, result.stderr
    message = one_line(result.stderr)
    assert message.startswith(
        f"error: refusing to listen on 0.0.0.0: {short} has 10 characters, too few"
    )
    assert guessable not in result.stderr
    assert not (tmp_path / "herald.db").exists()


def test_a_short_token_is_enough_on_loopback(tmp_path: Path) -> None:
    """Only this machine's users can try tokens there."""
    port = free_port()
    env = herald_environment(HERALD_ADMIN_TOKEN="adm", HERALD_INGEST_TOKEN="ing")
    with HeraldProcess("loopback", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=env,
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/healthz")

        admin = httpx.get(base + "/audit/u_1", headers={"Authorization": "Bearer adm"}, timeout=5)

    assert admin.status_code == 404


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_serve_refuses_an_admin_token_that_is_the_ingest_token(tmp_path: Path, host: str) -> None:
    """Every client allowed to send events would hold the key to the audit."""
    same = "one-token-for-everything"
    result = run_herald(
        ["serve", "--host", host, "--port", str(free_port()), "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_ADMIN_TOKEN=same, HERALD_INGEST_TOKEN=same),
        cwd=tmp_path,
    )

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: refusing to start: HERALD_ADMIN_TOKEN is the same as HERALD_INGEST_TOKEN"
    )
    assert same not in result.stderr
    assert not (tmp_path / "herald.db").exists()


@pytest.mark.parametrize(
    ("api_host", "metrics_host"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "localhost")],
    ids=["same address", "every address", "a name for the same address"],
)
def test_serve_refuses_a_metrics_port_that_is_the_api_s_own_before_announcing(
    tmp_path: Path, api_host: str, metrics_host: str
) -> None:
    """Let through, the dispatcher process could never bind it: restarted every second
    for ever, while /readyz said ready and nothing was delivered."""
    port = free_port()
    env = herald_environment(
        HERALD_PORT=str(port),
        HERALD_METRICS_PORT=str(port),
        HERALD_METRICS_HOST=metrics_host,
        HERALD_ADMIN_TOKEN=ADMIN_TOKEN,
        HERALD_INGEST_TOKEN=INGEST_TOKEN,
    )

    result = run_herald(
        ["serve", "--host", api_host, "--database", sqlite_url(tmp_path)],
        env=env,
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: the metrics port (HERALD_METRICS_PORT) is the API's port: ")
    assert line.endswith("; give the metrics a port of their own")
    assert f"{api_host}:{port}" in line
    assert not (tmp_path / "herald.db").exists()


def test_serve_refuses_an_api_port_already_taken_before_announcing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_herald(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=herald_environment(),
            cwd=tmp_path,
        )

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot serve the API on 127.0.0.1:{port}: Address already in use; choose "
        "another with --port or HERALD_PORT"
    ]
    assert not (tmp_path / "herald.db").exists()
