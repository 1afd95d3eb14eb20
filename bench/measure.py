"""Measurement steps every stage shares: start a server, probe it, run wrk, run batches.

Rates are per second, latencies in milliseconds, durations in seconds. Problems that
do not stop a stage (non-2xx responses, failed batches) are appended to the caller's
``errors`` list; problems that do raise ``BenchError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import httpx
from loadgen import EventFactory, batch_load
from options import BENCH_DIR, Config, server_argv
from servers import Server, free_port, running_server
from wrk_runner import WrkResult, run_wrk

LUA_SCRIPT = BENCH_DIR / "post_event.lua"
SPREAD_S = 3 * 24 * 3600


class BenchError(RuntimeError):
    """A stage could not produce a measurement."""


class Interrupts:
    """Turns SIGINT and SIGTERM into ``KeyboardInterrupt`` and remembers that they came.

    The exception is lost when the signal lands in a garbage-collector callback (Python
    prints "Exception ignored" and carries on), so stages also call ``check()`` between
    their steps; the run then stops at the next step instead of running to its end.
    """

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in this (the main) thread from now on."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a signal came, even one whose exception was lost."""
        if self.requested:
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: FrameType | None) -> NoReturn:
        self.requested = True
        raise KeyboardInterrupt


def log(message: str) -> None:
    """One progress line on stderr (stdout carries only the summary)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def bench_env(cfg: Config, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for anything the bench starts: the caller's, minus ``HERALD_*``
    (a stray token or database URL must not change the result), plus ``extra_env``,
    plus ``--env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return env | (extra_env or {}) | cfg.env


@contextlib.contextmanager
def bench_server(
    name: str, template: str, cfg: Config, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run the server of command ``template`` on a free port for the block; see servers.py."""
    port = free_port()
    argv = server_argv(template, port=port, workdir=workdir)
    log(f"{name}: starting {shlex.join(argv)}")
    with running_server(
        name,
        argv,
        port=port,
        workdir=workdir,
        env=bench_env(cfg, extra_env),
        startup_timeout_s=cfg.startup_timeout_s,
    ) as server:
        yield server
    log(f"{name}: stopped")


def factory(token: str, cfg: Config) -> EventFactory:
    """The standard event mix (see README), event ids prefixed with ``token``."""
    return EventFactory(token, users=cfg.users, spread_s=SPREAD_S, now=time.time(), seed=0)


def probe(server: Server, cfg: Config, token: str) -> None:
    """Post one event and insist on the contract: 200/202 with status 'accepted'."""
    event = factory(f"{token}p", cfg).event()
    response = httpx.post(f"{server.base_url}/events", json=event, timeout=30, trust_env=False)
    body = response.json() if "json" in response.headers.get("content-type", "") else {}
    if response.status_code not in (200, 202) or body.get("status") != "accepted":
        raise BenchError(
            f"{server.name}: probe POST /events got {response.status_code}: {response.text[:300]}"
        )


def wrk(
    server: Server, cfg: Config, token: str, duration_s: float, reconnect_every: int = 0
) -> WrkResult:
    """One wrk run of ``post_event.lua`` against ``POST /events``; with ``reconnect_every``
    N > 0 every Nth request of a wrk thread closes its connection (see the script)."""
    return run_wrk(
        f"{server.base_url}/events",
        script=LUA_SCRIPT,
        script_args=[token, str(cfg.users), str(SPREAD_S), str(reconnect_every)],
        duration_s=duration_s,
        connections=cfg.connections,
        threads=cfg.threads,
    )


def single(
    server: Server, cfg: Config, token: str, errors: list[str], reconnect_every: int = 0
) -> tuple[WrkResult, int]:
    """Probe, warm up, measure POST /events; return the result and events stored before it."""
    probe(server, cfg, token)
    stored = 1
    if cfg.warmup_s > 0:
        stored += wrk(server, cfg, f"{token}w", cfg.warmup_s, reconnect_every).succeeded
    log(f"{server.name}: wrk POST /events for {cfg.duration_s:g} s")
    result = wrk(server, cfg, f"{token}m", cfg.duration_s, reconnect_every)
    if result.errors:
        errors.append(
            f"{server.name} POST /events: {result.non_2xx} non-2xx responses and "
            f"{result.socket_errors} socket errors in {result.requests} requests"
        )
    log(f"{server.name}: {result.requests_per_s:,.0f} req/s, p99 {result.p99_ms:.2f} ms")
    return result, stored


def batch(
    server: Server, cfg: Config, token: str, errors: list[str], reconnect: bool = False
) -> dict[str, Any]:
    """Timed ``/events/batch`` load; returns ``BatchStats.summary()``. ``reconnect``: a new
    connection for every batch (``Connection: close``)."""
    log(f"{server.name}: batch load for {cfg.batch_duration_s:g} s")
    stats = asyncio.run(
        batch_load(
            server.base_url,
            factory(f"{token}b", cfg),
            duration_s=cfg.batch_duration_s,
            clients=cfg.batch_clients,
            batch_size=cfg.batch_size,
            reconnect=reconnect,
        )
    )
    if stats.failed_batches:
        errors.append(f"{server.name} POST /events/batch: {stats.failed_batches} failed batches")
    log(f"{server.name}: batch {stats.events_per_s:,.0f} events/s")
    return stats.summary()
