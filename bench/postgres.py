"""Stage 5: ingestion on PostgreSQL with 1, 2, 4 ... API processes.

For each ``--pg-workers`` count N: a fresh database on the ``--postgres`` server
(``herald_bench_<random>``), ``herald db upgrade``, then
``herald serve --workers N --no-dispatcher`` on it (API processes only, the shape the
README recommends beside ``herald worker``), the same wrk and batch runs as stage 2,
and the database dropped again (also on error). An unreachable server skips the stage.

The processes share one listening socket and a connection stays with the process that
accepted it, so wrk's 32 connections opened in the first instant (and the batch
generator's 4) can land unevenly, e.g. 20/12 or 27/2/1/2, and then one process does most
of the work. With ``--pg-reconnect-every`` N > 0 (the default) every Nth request of a wrk
thread and every batch asks for ``Connection: close``; the reconnects are accepted by
whichever process is free, which spreads the load as a real client population would.

A rate that falls as processes are added (more than ``FALL_TOLERANCE`` below the best
rate with fewer) is reported as a warning: on a machine with few CPUs the curve should
flatten, not fall.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from measure import BenchError, batch, bench_env, bench_server, log, single
from options import Config, server_argv
from servers import Server
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

SERVE_CMD = "{bin}/herald serve --host {host} --port {port} --no-dispatcher --workers "
UPGRADE_CMD = "{bin}/herald db upgrade"
CONNECT_TIMEOUT_S = 3
FALL_TOLERANCE = 0.10
STARTED_LINE = "Application startup complete."
ALL_STARTED_TIMEOUT_S = 30.0


def _engine_url(server_url: str) -> URL:
    """The server URL with psycopg 3 as the driver, as Herald itself uses it."""
    return make_url(server_url).set(drivername="postgresql+psycopg")


def unreachable(server_url: str) -> str | None:
    """Why the server cannot be used, or None when it answers."""
    try:
        engine = create_engine(
            _engine_url(server_url), connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        return (
            f"PostgreSQL at {redacted(server_url)} unreachable: {type(exc).__name__}: {first_line}"
        )
    return None


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on that server, dropped on leaving the block (even while
    processes still hold connections to it); yields its ``postgresql://`` URL."""
    name = f"herald_bench_{secrets.token_hex(5)}"
    admin = create_engine(_engine_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(server_url).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _server_version(server_url: str) -> str:
    engine = create_engine(_engine_url(server_url))
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def _database_stats(url: str, batch_result: dict[str, Any]) -> dict[str, Any]:
    """Events stored and transactions committed in that database, once its clients have
    gone (a backend reports its statistics when it exits).

    ``single_commits_per_1000_events`` leaves the batch run out (one commit per batch
    request): it shows how well the API processes group concurrent single events into
    transactions, the probe, warm-up and health checks included.
    """
    name = make_url(url).database
    engine = create_engine(_engine_url(url))
    try:
        with engine.connect() as connection:
            events = int(connection.execute(text("SELECT count(*) FROM events")).scalar() or 0)
            commits = int(
                connection.execute(
                    text("SELECT xact_commit FROM pg_stat_database WHERE datname = :name"),
                    {"name": name},
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()
    single_events = events - batch_result["events"]
    single_commits = commits - batch_result["batches"]
    per_1000 = round(single_commits * 1000 / single_events, 1) if single_events > 0 else None
    return {
        "events_stored": events,
        "commits": commits,
        "single_commits_per_1000_events": per_1000,
    }


def _checkpoint(server_url: str) -> None:
    """Have PostgreSQL write out its dirty buffers before a measurement, so that a point
    does not pay, in slower commit flushes, for what the points before it wrote."""
    engine = create_engine(_engine_url(server_url), isolation_level="AUTOCOMMIT")
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            connection.execute(text("CHECKPOINT"))
    except Exception as exc:  # e.g. a role without the right to checkpoint: measure anyway
        log(f"postgres: CHECKPOINT refused ({str(exc).splitlines()[0]}); measuring anyway")
        return
    finally:
        engine.dispose()
    log(f"postgres: checkpoint in {time.perf_counter() - started:.1f} s")


def _upgrade(cfg: Config, url: str, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = server_argv(UPGRADE_CMD, port=0, workdir=workdir)
    # The URL goes through the environment: no quoting, no password in `ps`.
    env = bench_env(cfg, {"HERALD_DATABASE_URL": url})
    done = subprocess.run(
        argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"herald db upgrade failed ({done.returncode}): {done.stderr[-500:]}")


def _wait_all_started(server: Server, workers: int) -> None:
    """uvicorn answers /healthz once its first worker is up; the others may still be
    importing, which would take CPU from the measurement. Wait until uvicorn has logged
    every worker's start-up (INFO lines; a lower log level only costs the timeout)."""
    deadline = time.monotonic() + ALL_STARTED_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.log_path.read_text(errors="replace").count(STARTED_LINE) >= workers:
            return
        time.sleep(0.1)
    log(f"{server.name}: could not see all {workers} workers start; measuring anyway")


def run_postgres(
    cfg: Config,
    tmp: Path,
    token: str,
    errors: list[str],
    result: dict[str, Any],
    check: Callable[[], None],
) -> None:
    """Run stage 5 (the server must be reachable), filling ``result`` (the ``postgres``
    results entry) as it goes, so a failure keeps the points already measured. ``check``
    is called between steps and raises ``KeyboardInterrupt`` once the run was asked to
    stop."""
    assert cfg.postgres_url is not None
    result["server"] = redacted(cfg.postgres_url)
    result["server_version"] = _server_version(cfg.postgres_url)
    result["reconnect_every"] = cfg.pg_reconnect_every
    result["points"] = []
    for workers in cfg.pg_workers:
        check()
        workdir = tmp / f"postgres-{workers}"
        with scratch_database(cfg.postgres_url) as url:
            _upgrade(cfg, url, workdir)
            _checkpoint(cfg.postgres_url)
            extra = {"HERALD_DATABASE_URL": url}
            name = f"herald-pg-{workers}"
            template = SERVE_CMD + str(workers)
            with bench_server(name, template, cfg, workdir, extra) as server:
                _wait_all_started(server, workers)
                run_token, every = f"{token}pg{workers}", cfg.pg_reconnect_every
                wrk_result, _ = single(server, cfg, run_token, errors, every)
                check()
                batch_result = batch(server, cfg, run_token, errors, reconnect=every > 0)
            stats = _database_stats(url, batch_result)
        log(f"{name}: database dropped")
        point = {"workers": workers, "single": asdict(wrk_result), "batch": batch_result} | stats
        result["points"].append(point)
        result |= scaling(result["points"])


def scaling(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates relative to the first point (fewest processes), and any falls in the curve.

    ``single_scaling`` / ``batch_scaling``: one ratio per point; ``falls``: a sentence
    for each point more than ``FALL_TOLERANCE`` below the best rate before it.
    """
    series = {
        "single": [p["single"]["requests_per_s"] for p in points],
        "batch": [p["batch"]["events_per_s"] for p in points],
    }
    out: dict[str, Any] = {"falls": []}
    for kind, rates in series.items():
        first = rates[0] if rates else 0
        out[f"{kind}_scaling"] = [round(r / first, 3) if first else None for r in rates]
        for i in range(1, len(rates)):
            best = max(rates[:i])
            if rates[i] < best * (1 - FALL_TOLERANCE):
                out["falls"].append(
                    f"postgres {kind}: {points[i]['workers']} processes {rates[i]:,.0f}/s, "
                    f"{1 - rates[i] / best:.0%} below {best:,.0f}/s with fewer"
                )
    return out


def redacted(server_url: str) -> str:
    """The URL with its password masked, for logs and results."""
    return make_url(server_url).render_as_string(hide_password=True)
