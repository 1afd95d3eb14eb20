"""Benchmark Herald's ingestion and delivery, over loopback.

Run as ``.venv/bin/python bench/run.py [options]`` (or ``make bench BENCH_ARGS=...``).
Stages (``--stages``), each server on a fresh temporary directory and free 127.0.0.1 port:
  1. bare app (bare_app.py): wrk POST /events;
  2. herald on a fresh SQLite database: wrk POST /events, then batch load on /events/batch;
     stages 1 and 2 alternate for --rounds rounds, and each figure is their median;
  2b. inline: stage 2 again with the dispatcher on the server's event loop
     (``HERALD_DISPATCHER_PROCESS=false``) instead of in a process of its own;
  3. herald on another fresh database: for each --history size, preload through
     /events/batch up to that many stored events, then wrk POST /events again;
  4. delivery: ``herald worker`` draining a preloaded outbox, stub and webhook (delivery.py);
  5. postgres: stage 2's runs with 1, 2, 4 API processes on PostgreSQL (postgres.py).
Prints a markdown summary, writes bench/results/latest.json; exits 1 if anything failed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from delivery import run_delivery
from loadgen import preload
from measure import (
    BenchError,
    Interrupts,
    batch,
    bench_server,
    factory,
    log,
    single,
)
from options import BARE_CMD, Config, parse_args
from postgres import redacted, run_postgres, unreachable
from report import machine_info, median_of_rounds, summary_table, write_json
from servers import Server, ServerError
from sqlalchemy.exc import SQLAlchemyError
from wrk_runner import WrkError

# What a stage may raise that ends the run with a recorded error instead of a traceback.
STAGE_ERRORS = (BenchError, ServerError, WrkError, httpx.HTTPError, sqlite3.Error, SQLAlchemyError)


def _settle(database: Path) -> float | None:
    """Copy what the preload left in SQLite's write-ahead log into the database file, and
    have the kernel write it out, before measuring; returns the seconds it took (None
    without a SQLite file).

    A preload of a million events leaves the server's background checkpoints minutes of
    catching up; measured during that, the figure would show the preload's leftover I/O
    rather than the cost of the history's size. Each size gets the same treatment.
    """
    if not database.is_file():
        return None
    started = time.perf_counter()
    with sqlite3.connect(database, timeout=600) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    _quiet_disk()
    return round(time.perf_counter() - started, 2)


def _quiet_disk() -> None:
    """Have the kernel write out what earlier stages left dirty, so that a stage's commits
    do not queue behind gigabytes of someone else's writeback (PostgreSQL's fsync right
    after the million-event history stage ran at a third of its speed)."""
    started = time.perf_counter()
    os.sync()
    if time.perf_counter() - started > 0.5:
        log(f"disk: flushed earlier stages' writes in {time.perf_counter() - started:.1f} s")


def _history(
    server: Server,
    cfg: Config,
    token: str,
    errors: list[str],
    check: Callable[[], None],
    database: Path,
) -> list[dict[str, Any]]:
    """Grow the stored history through each size in turn and measure POST /events at each."""
    events = factory(f"{token}h", cfg)
    stored, points = 0, []
    for target in cfg.history:
        check()
        preload_rate = None
        if target > stored:
            log(f"{server.name}: preloading {target - stored:,} events to reach {target:,}")
            stats = asyncio.run(
                preload(
                    server.base_url,
                    events,
                    count=target - stored,
                    clients=cfg.batch_clients,
                    batch_size=cfg.batch_size,
                )
            )
            stored += stats.events
            if stats.failed_batches:
                raise BenchError(f"preload failed: {stats.error_samples}")
            preload_rate = round(stats.events_per_s, 1)
        settle_s = _settle(database)
        if settle_s is not None:
            log(f"{server.name}: write-ahead log checkpointed in {settle_s:g} s")
        result, added = single(server, cfg, f"{token}h{target}", errors)
        stored += added
        point = {
            "target": target,
            "stored_before": stored,
            "preload_events_per_s": preload_rate,
            "checkpoint_s": settle_s,
        }
        stored += result.succeeded
        points.append(point | {"stored_after": stored} | asdict(result))
    return points


def run(cfg: Config, tmp: Path, results: dict[str, Any], check: Callable[[], None]) -> None:
    """Run the selected stages, filling ``results`` as it goes (so a failure keeps what
    was measured); a stage that cannot run here is recorded in ``results["skipped"]``.
    ``check`` raises ``KeyboardInterrupt`` once the run was asked to stop."""
    token = secrets.token_hex(4)
    errors: list[str] = results["errors"]
    stages = set(cfg.stages)
    if stages & {"bare", "herald"}:
        results["rounds"] = _rounds(cfg, tmp, token, errors, check)
        results.update(median_of_rounds(results["rounds"]))
    check()
    _quiet_disk()
    if "inline" in stages and not _skipped("inline", _inline_blocker(cfg), results):
        _inline(cfg, tmp / "inline", token, errors, results)
    check()
    _quiet_disk()
    if "history" in stages and cfg.history:
        # Without this, the dispatcher drains the preload's outbox backlog while the
        # history runs are measured, and that, not the history size, sets the rate.
        off = {} if cfg.history_dispatcher else {"HERALD_DISPATCHER": "false"}
        with bench_server("herald-history", cfg.herald_cmd, cfg, tmp / "history", off) as herald:
            results["history"] = _history(
                herald, cfg, token, errors, check, tmp / "history" / "herald.db"
            )
        results["history_ratio"] = _ratio(results["history"][-1], results["history"][0])
    check()
    _quiet_disk()
    if "delivery" in stages and not _skipped("delivery", _delivery_blocker(cfg), results):
        run_delivery(cfg, tmp, token, errors, results.setdefault("delivery", {}), check)
    check()
    _quiet_disk()
    if "postgres" in stages and not _skipped("postgres", _postgres_blocker(cfg), results):
        pg = results.setdefault("postgres", {})
        try:
            run_postgres(cfg, tmp, token, errors, pg, check)
        finally:
            results["warnings"].extend(pg.get("falls", []))


def _rounds(
    cfg: Config, tmp: Path, token: str, errors: list[str], check: Callable[[], None]
) -> list[dict[str, Any]]:
    """Stages 1 and 2, ``cfg.rounds`` times, alternating, each on a fresh server and
    database. A single pair of 10 s runs moved by 10-20% from one try to the next here;
    alternating rounds let whatever else the machine is doing fall on both alike."""
    rounds: list[dict[str, Any]] = []
    for n in range(1, cfg.rounds + 1):
        if cfg.rounds > 1:
            log(f"round {n} of {cfg.rounds}")
        entry: dict[str, Any] = {}
        if "bare" in cfg.stages:
            with bench_server("bare", BARE_CMD, cfg, tmp / f"bare-{n}") as bare:
                entry["bare"] = asdict(single(bare, cfg, f"{token}a{n}", errors)[0])
            check()
            _quiet_disk()
        if "herald" in cfg.stages:
            with bench_server("herald", cfg.herald_cmd, cfg, tmp / f"herald-{n}") as herald:
                entry["herald_single"] = asdict(single(herald, cfg, f"{token}s{n}", errors)[0])
                entry["herald_batch"] = batch(herald, cfg, f"{token}b{n}", errors)
            check()
            _quiet_disk()
        if "bare" in entry and "herald_single" in entry:
            entry["herald_over_bare"] = _ratio(entry["herald_single"], entry["bare"])
        rounds.append(entry)
    return rounds


def _inline(
    cfg: Config, workdir: Path, token: str, errors: list[str], results: dict[str, Any]
) -> None:
    inline = {"HERALD_DISPATCHER_PROCESS": "false"}
    with bench_server("herald-inline", cfg.herald_cmd, cfg, workdir, inline) as herald:
        results["inline_single"] = asdict(single(herald, cfg, f"{token}t", errors)[0])
        if "bare" in results:
            results["inline_over_bare"] = _ratio(results["inline_single"], results["bare"])
        results["inline_batch"] = batch(herald, cfg, f"{token}u", errors)


def _inline_blocker(cfg: Config) -> str | None:
    if cfg.herald_cmd == BARE_CMD:
        return "--herald-cmd bare: the stage runs herald serve"
    return None


def _delivery_blocker(cfg: Config) -> str | None:
    if cfg.herald_cmd == BARE_CMD:
        return "--herald-cmd bare: the bare app has no outbox to deliver"
    return None if cfg.delivery_messages else "--delivery none"


def _postgres_blocker(cfg: Config) -> str | None:
    if cfg.herald_cmd == BARE_CMD:
        return "--herald-cmd bare: the stage runs herald on PostgreSQL"
    if not cfg.pg_workers:
        return "--pg-workers none"
    return unreachable(cfg.postgres_url) if cfg.postgres_url else "--postgres none"


def _skipped(stage: str, reason: str | None, results: dict[str, Any]) -> bool:
    if reason:
        log(f"{stage}: skipped ({reason})")
        results["skipped"][stage] = reason
    return reason is not None


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    den = denominator["requests_per_s"]
    return round(numerator["requests_per_s"] / den, 3) if den else None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0 ok, 1 failures, 130 interrupted)."""
    cfg = parse_args(argv)
    interrupts = Interrupts()
    interrupts.install()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": asdict(cfg)
        | {
            "output": str(cfg.output),
            "postgres_url": cfg.postgres_url and redacted(cfg.postgres_url),
        },
        "machine": machine_info(),
        "errors": [],
        "warnings": [],
        "skipped": {},
    }
    status = 0
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    try:
        run(cfg, tmp, results, interrupts.check)
    except STAGE_ERRORS as exc:
        results["errors"].append(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        results["errors"].append("interrupted")
        status = 130
    finally:
        if cfg.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if results["errors"]:
                log("temporary directory removed; rerun with --keep to read the server logs")
    write_json(results, cfg.output)
    print(summary_table(results))
    log(f"results written to {cfg.output}")
    return status or (1 if results["errors"] else 0)


if __name__ == "__main__":
    sys.exit(main())
