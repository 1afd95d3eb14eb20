"""The benchmark's command line: options, their defaults, and server command templates."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from servers import HOST

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
# Placeholders: {python} {bin} (the virtualenv's bin/), {bench}, {host}, {port}, {workdir}.
DEFAULT_HERALD_CMD = (
    "{bin}/herald serve --host {host} --port {port} --database sqlite:///{workdir}/herald.db"
)
BARE_CMD = "{python} {bench}/bare_app.py --host {host} --port {port}"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
STAGES = ("bare", "herald", "inline", "history", "delivery", "postgres")


@dataclass(frozen=True)
class Config:
    """What to run. Durations in seconds; ``history`` are stored-event counts;
    ``delivery_messages`` messages per provider; ``pg_workers`` API process counts."""

    duration_s: float
    warmup_s: float
    connections: int
    threads: int
    users: int
    batch_clients: int
    batch_size: int
    batch_duration_s: float
    history: tuple[int, ...]
    history_dispatcher: bool
    herald_cmd: str
    env: dict[str, str]
    startup_timeout_s: float
    output: Path
    keep: bool
    stages: tuple[str, ...]
    delivery_messages: int
    postgres_url: str | None
    pg_workers: tuple[int, ...]
    pg_reconnect_every: int
    rounds: int


def parse_args(argv: list[str] | None = None) -> Config:
    """Read the command line; ``--quick`` only changes defaults that were not given."""
    p = argparse.ArgumentParser(description="Benchmark Herald against a bare FastAPI app.")
    p.add_argument(
        "--quick", action="store_true", help="smoke check: 3 s runs, small history and delivery"
    )
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 10, --quick 3)")
    p.add_argument(
        "--warmup", type=float, help="seconds of warm-up before each (default 2, --quick 1)"
    )
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--users", type=int, default=100_000, help="distinct user ids")
    p.add_argument(
        "--rounds",
        type=int,
        help="times stages bare and herald run, alternating; figures are medians "
        "(default 3, --quick 1)",
    )
    p.add_argument("--batch-clients", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--batch-duration", type=float, help="seconds (default: --duration)")
    p.add_argument(
        "--history",
        help="stored-event counts, increasing, or 'none' "
        "(default 10000,1000000, --quick 5000,50000)",
    )
    p.add_argument(
        "--history-dispatcher",
        action="store_true",
        help="keep herald's dispatcher on while measuring history (off by default)",
    )
    p.add_argument(
        "--herald-cmd",
        default=DEFAULT_HERALD_CMD,
        help="command template for herald, or 'bare' to test the harness with the bare app",
    )
    p.add_argument("--rules", type=Path, help="rules file, passed to herald as --rules")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the servers, e.g. HERALD_DISPATCHER=false (repeatable)",
    )
    p.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated stages to run, in this order: {','.join(STAGES)} (default all)",
    )
    p.add_argument(
        "--delivery",
        help="messages per provider in the delivery stage, or 'none' (default 20000, --quick 2000)",
    )
    p.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        metavar="URL",
        help=f"PostgreSQL server for the postgres stage, or 'none' (default {DEFAULT_POSTGRES})",
    )
    p.add_argument(
        "--pg-workers", default="1,2,4", help="API process counts on PostgreSQL (default 1,2,4)"
    )
    p.add_argument(
        "--pg-reconnect-every",
        type=int,
        default=50,
        metavar="N",
        help="postgres stage: each wrk thread reconnects every N requests, each batch uses a"
        " new connection, so the API processes share the load; 0 keeps connections (default 50)",
    )
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args(argv)
    duration = a.duration if a.duration is not None else (3.0 if a.quick else 10.0)
    history_text = a.history or ("5000,50000" if a.quick else "10000,1000000")
    herald_cmd = BARE_CMD if a.herald_cmd == "bare" else a.herald_cmd
    delivery_text = a.delivery or ("2000" if a.quick else "20000")
    delivery = 0 if delivery_text.lower() == "none" else int(delivery_text.replace("_", ""))
    if delivery < 0:
        p.error("--delivery wants a message count, or 'none'")
    if a.rules:
        herald_cmd += f" --rules {shlex.quote(str(a.rules.resolve()))}"
    return Config(
        duration_s=duration,
        warmup_s=a.warmup if a.warmup is not None else (1.0 if a.quick else 2.0),
        connections=a.connections,
        threads=a.threads,
        users=a.users,
        batch_clients=a.batch_clients,
        batch_size=a.batch_size,
        batch_duration_s=a.batch_duration if a.batch_duration is not None else duration,
        history=_parse_sizes(history_text, "--history"),
        history_dispatcher=a.history_dispatcher,
        herald_cmd=herald_cmd,
        env=_parse_env(p, a.env),
        startup_timeout_s=a.startup_timeout,
        output=a.output,
        keep=a.keep,
        stages=_parse_stages(p, a.stages),
        delivery_messages=delivery,
        postgres_url=None if a.postgres.lower() == "none" else a.postgres,
        pg_workers=_parse_sizes(a.pg_workers, "--pg-workers"),
        pg_reconnect_every=max(0, a.pg_reconnect_every),
        rounds=max(1, a.rounds if a.rounds is not None else (1 if a.quick else 3)),
    )


def _parse_sizes(text: str, option: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    sizes = tuple(int(s.replace("_", "")) for s in text.split(",") if s.strip())
    if list(sizes) != sorted(sizes) or any(size < 1 for size in sizes):
        raise SystemExit(f"{option} values must be positive and increasing")
    return sizes


def _parse_stages(parser: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    wanted = {s.strip() for s in text.split(",") if s.strip()}
    if unknown := wanted - set(STAGES):
        parser.error(f"--stages: unknown {', '.join(sorted(unknown))} (choose from {STAGES})")
    return tuple(stage for stage in STAGES if stage in wanted)


def _parse_env(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    if bad := [item for item in items if "=" not in item]:
        parser.error(f"--env wants KEY=VALUE, got {bad[0]!r}")
    return dict(item.split("=", 1) for item in items)


def server_argv(template: str, *, port: int, workdir: Path) -> list[str]:
    """Fill a command template's placeholders and split it into an argv list."""
    return shlex.split(
        template.format(
            python=sys.executable,
            bin=Path(sys.executable).parent,
            bench=BENCH_DIR,
            host=HOST,
            port=port,
            workdir=workdir,
        )
    )
