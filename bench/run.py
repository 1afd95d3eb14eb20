"""Benchmark Herald's ingestion against a bare FastAPI app, over loopback.

Run as ``.venv/bin/python bench/run.py [options]`` (or ``make bench BENCH_ARGS=...``).
Stages, each server on a fresh temporary directory and free 127.0.0.1 port:
  1. bare app (bare_app.py): wrk POST /events;
  2. herald on a fresh SQLite database: wrk POST /events, then batch load on /events/batch;
  3. herald on another fresh database: for each --history size, preload through
     /events/batch up to that many stored events, then wrk POST /events again.
Prints a markdown summary, writes bench/results/latest.json; exits 1 if anything failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import httpx
from loadgen import EventFactory, batch_load, preload
from options import BARE_CMD, BENCH_DIR, Config, parse_args, server_argv
from report import machine_info, summary_table, write_json
from servers import Server, ServerError, free_port, running_server
from wrk_runner import WrkError, WrkResult, run_wrk

LUA_SCRIPT = BENCH_DIR / "post_event.lua"
SPREAD_S = 3 * 24 * 3600


class BenchError(RuntimeError):
    """A stage could not produce a measurement."""


@contextlib.contextmanager
def _server(
    name: str, template: str, cfg: Config, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    port = free_port()
    argv = server_argv(template, port=port, workdir=workdir)
    _log(f"{name}: starting {shlex.join(argv)}")
    # HERALD_* from the caller's shell (a token, another database) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env |= (extra_env or {}) | cfg.env
    with running_server(
        name, argv, port=port, workdir=workdir, env=env, startup_timeout_s=cfg.startup_timeout_s
    ) as server:
        yield server
    _log(f"{name}: stopped")


def _factory(token: str, cfg: Config) -> EventFactory:
    return EventFactory(token, users=cfg.users, spread_s=SPREAD_S, now=time.time(), seed=0)


def _probe(server: Server, cfg: Config, token: str) -> None:
    """Post one event and insist on the contract: 200/202 with status 'accepted'."""
    event = _factory(f"{token}p", cfg).event()
    response = httpx.post(f"{server.base_url}/events", json=event, timeout=30, trust_env=False)
    body = response.json() if "json" in response.headers.get("content-type", "") else {}
    if response.status_code not in (200, 202) or body.get("status") != "accepted":
        raise BenchError(
            f"{server.name}: probe POST /events got {response.status_code}: {response.text[:300]}"
        )


def _wrk(server: Server, cfg: Config, token: str, duration_s: float) -> WrkResult:
    return run_wrk(
        f"{server.base_url}/events",
        script=LUA_SCRIPT,
        script_args=[token, str(cfg.users), str(SPREAD_S)],
        duration_s=duration_s,
        connections=cfg.connections,
        threads=cfg.threads,
    )


def _single(server: Server, cfg: Config, token: str, errors: list[str]) -> tuple[WrkResult, int]:
    """Probe, warm up, measure POST /events; return the result and events stored before it."""
    _probe(server, cfg, token)
    stored = 1
    if cfg.warmup_s > 0:
        stored += _wrk(server, cfg, f"{token}w", cfg.warmup_s).succeeded
    _log(f"{server.name}: wrk POST /events for {cfg.duration_s:g} s")
    result = _wrk(server, cfg, f"{token}m", cfg.duration_s)
    if result.errors:
        errors.append(
            f"{server.name} POST /events: {result.non_2xx} non-2xx responses and "
            f"{result.socket_errors} socket errors in {result.requests} requests"
        )
    _log(f"{server.name}: {result.requests_per_s:,.0f} req/s, p99 {result.p99_ms:.2f} ms")
    return result, stored


def _batch(server: Server, cfg: Config, token: str, errors: list[str]) -> dict[str, Any]:
    _log(f"{server.name}: batch load for {cfg.batch_duration_s:g} s")
    stats = asyncio.run(
        batch_load(
            server.base_url,
            _factory(f"{token}b", cfg),
            duration_s=cfg.batch_duration_s,
            clients=cfg.batch_clients,
            batch_size=cfg.batch_size,
        )
    )
    if stats.failed_batches:
        errors.append(f"{server.name} POST /events/batch: {stats.failed_batches} failed batches")
    return stats.summary()


def _history(server: Server, cfg: Config, token: str, errors: list[str]) -> list[dict[str, Any]]:
    """Grow the stored history through each size in turn and measure POST /events at each."""
    factory = _factory(f"{token}h", cfg)
    stored, points = 0, []
    for target in cfg.history:
        preload_rate = None
        if target > stored:
            _log(f"{server.name}: preloading {target - stored:,} events to reach {target:,}")
            stats = asyncio.run(
                preload(
                    server.base_url,
                    factory,
                    count=target - stored,
                    clients=cfg.batch_clients,
                    batch_size=cfg.batch_size,
                )
            )
            stored += stats.events
            if stats.failed_batches:
                raise BenchError(f"preload failed: {stats.error_samples}")
            preload_rate = round(stats.events_per_s, 1)
        result, added = _single(server, cfg, f"{token}h{target}", errors)
        stored += added
        point = {"target": target, "stored_before": stored, "preload_events_per_s": preload_rate}
        stored += result.succeeded
        points.append(point | {"stored_after": stored} | asdict(result))
    return points


def run(cfg: Config, tmp: Path, results: dict[str, Any]) -> None:
    """Run every stage, filling ``results`` as it goes (so a failure keeps what was measured)."""
    token = secrets.token_hex(4)
    errors: list[str] = results["errors"]
    with _server("bare", BARE_CMD, cfg, tmp / "bare") as bare:
        results["bare"] = asdict(_single(bare, cfg, f"{token}a", errors)[0])
    with _server("herald", cfg.herald_cmd, cfg, tmp / "herald") as herald:
        results["herald_single"] = asdict(_single(herald, cfg, f"{token}s", errors)[0])
        results["herald_over_bare"] = _ratio(results["herald_single"], results["bare"])
        results["herald_batch"] = _batch(herald, cfg, token, errors)
    if cfg.history:
        # Without this, the dispatcher drains the preload's outbox backlog while the
        # history runs are measured, and that, not the history size, sets the rate.
        off = {} if cfg.history_dispatcher else {"HERALD_DISPATCHER": "false"}
        with _server("herald-history", cfg.herald_cmd, cfg, tmp / "history", off) as herald:
            results["history"] = _history(herald, cfg, token, errors)
        results["history_ratio"] = _ratio(results["history"][-1], results["history"][0])


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    den = denominator["requests_per_s"]
    return round(numerator["requests_per_s"] / den, 3) if den else None


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0 ok, 1 failures, 130 interrupted)."""
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": asdict(cfg) | {"output": str(cfg.output)},
        "machine": machine_info(),
        "errors": [],
    }
    status = 0
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    try:
        run(cfg, tmp, results)
    except (BenchError, ServerError, WrkError, httpx.HTTPError) as exc:
        results["errors"].append(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        results["errors"].append("interrupted")
        status = 130
    finally:
        if cfg.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if results["errors"]:
                _log("temporary directory removed; rerun with --keep to read the server logs")
    write_json(results, cfg.output)
    print(summary_table(results))
    _log(f"results written to {cfg.output}")
    return status or (1 if results["errors"] else 0)


if __name__ == "__main__":
    sys.exit(main())
