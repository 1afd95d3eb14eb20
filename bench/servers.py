"""Start and stop the HTTP servers under test, on loopback only.

Each process runs in its own process group (its own session), with its working
directory and log file in a directory the caller owns. ``running_process`` (any
command) and ``running_server`` (an HTTP server, health-checked) always stop what
they started: SIGTERM to that group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Server:
    """A started server: its name, base URL (``http://127.0.0.1:PORT``) and log file."""

    name: str
    base_url: str
    log_path: Path


class ServerError(RuntimeError):
    """The server did not start or answer its health check in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    """Return the last ``lines`` lines of a log file, or '' if it does not exist."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running_process(
    name: str, argv: list[str], *, workdir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run ``argv`` in ``workdir`` for the block's duration; yield the process and its log.

    Output goes to ``workdir/<name>.log``. ``env`` replaces the environment when given.
    The process group is stopped on leaving the block, also on error or KeyboardInterrupt.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, log_path
    finally:
        stop_process(process)


@contextlib.contextmanager
def running_server(
    name: str,
    argv: list[str],
    *,
    port: int,
    workdir: Path,
    env: dict[str, str] | None = None,
    startup_timeout_s: float = 30.0,
) -> Iterator[Server]:
    """Run ``argv`` (which must make it listen on 127.0.0.1:``port``) for the block's duration.

    Waits until ``GET /healthz`` answers 200 before yielding; raises ``ServerError``
    with the end of its log if the process exits or ``startup_timeout_s`` passes first.
    ``env`` replaces the environment when given. The process is stopped on leaving
    the block, also on error or KeyboardInterrupt.
    """
    with running_process(name, argv, workdir=workdir, env=env) as (process, log_path):
        server = Server(name=name, base_url=f"http://{HOST}:{port}", log_path=log_path)
        _wait_healthy(server, process, startup_timeout_s)
        yield server


def _wait_healthy(server: Server, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerError(
                    f"{server.name} exited with code {process.returncode} before it was healthy;"
                    f" log {server.log_path}:\n{log_tail(server.log_path)}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get("/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise ServerError(
        f"{server.name} not healthy after {timeout_s:.0f} s; log {server.log_path}:\n"
        f"{log_tail(server.log_path)}"
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group we created for ``process``; bounded by ``STOP_GRACE_S``."""
    if process.poll() is not None:
        return
    # The child leads its own session, so its pid is its group id; children it spawned
    # (if any) are stopped with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_GRACE_S)
