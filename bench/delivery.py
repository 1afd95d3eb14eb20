"""Stage 4: how fast ``herald worker`` drains a full outbox, per provider (messages/s).

1. ``herald serve --no-dispatcher`` on a fresh SQLite database; ``--delivery`` events
   posted through ``/events/batch``, each one creating exactly one email message
   (``payment_failed``, ``INSUFFICIENT_FUNDS``, attempt 1, a user of its own, so neither
   the once-a-day limit nor the risk alert applies); the server is stopped and the
   count of pending messages checked.
2. For each provider, a copy of that database and ``herald worker`` on it, with
   - ``stub``: the packaged rule file (email to the stub provider, ``outbox.jsonl``);
   - ``webhook``: the packaged rules plus ``providers: {email: {type: webhook}}``
     pointing at ``receiver_app.py``, a separate process on 127.0.0.1.
   The database is polled read-only until nothing is pending or sending (outbox_db.py).
3. Checks: every message ``sent``, none failed; the stub wrote one line per message;
   the receiver got one request per message, each message id exactly once as
   ``Idempotency-Key``. A failed check is an error (exit status 1).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from loadgen import preload
from measure import BenchError, bench_env, bench_server, log
from options import Config, server_argv
from outbox_db import (
    DrainError,
    copy_database,
    sent_message_ids,
    sent_span_rate,
    status_counts,
    wait_drained,
)
from servers import Server, running_process

PROVIDERS = ("stub", "webhook")
DB = "sqlite:///{workdir}/herald.db"
SERVE_CMD = "{bin}/herald serve --host {host} --port {port} --no-dispatcher --database " + DB
WORKER_CMD = "{bin}/herald worker --database " + DB
RECEIVER_CMD = "{python} {bench}/receiver_app.py --host {host} --port {port}"


class DeliveryEvents:
    """Events that each create one email message: ids ``{token}-{n}``, users
    ``{token}_{n}``, n counting from 1, stamped a minute before ``now`` (Unix s)."""

    def __init__(self, token: str, *, now: float) -> None:
        self._token = token
        self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
        self._count = 0

    def event(self) -> dict[str, Any]:
        """Return the next event as a JSON-ready dict."""
        self._count += 1
        user = f"{self._token}_{self._count}"
        return {
            "event_id": f"{self._token}-{self._count}",
            "user_id": user,
            "event_type": "payment_failed",
            "event_timestamp": self._stamp,
            "properties": {
                "amount": 42.5,
                "attempt_number": 1,
                "failure_reason": "INSUFFICIENT_FUNDS",
            },
            "user_traits": {"email": f"{user}@example.com", "first_name": "Bench"},
        }

    def batch_body(self, size: int) -> bytes:
        """Return a ``/events/batch`` request body holding ``size`` new events."""
        return orjson.dumps({"events": [self.event() for _ in range(size)]})


def run_delivery(
    cfg: Config,
    tmp: Path,
    token: str,
    errors: list[str],
    result: dict[str, Any],
    check: Callable[[], None],
) -> None:
    """Run stage 4, filling ``result`` (the ``delivery`` results entry, see README) as it
    goes, so a failure keeps the providers already measured. ``check`` is called between
    steps and raises ``KeyboardInterrupt`` once the run was asked to stop."""
    count = cfg.delivery_messages
    base = tmp / "delivery"
    result["messages"] = count
    result["preload_events_per_s"] = _preload(cfg, base, token, count)
    pending = status_counts(base / "herald.db")
    if pending != {"pending": count}:
        raise BenchError(f"delivery preload: expected {count} pending messages, found {pending}")
    for provider in PROVIDERS:
        check()
        workdir = tmp / f"delivery-{provider}"
        copy_database(base / "herald.db", workdir / "herald.db")
        result[provider] = _measure(provider, cfg, workdir, count, errors)


def _preload(cfg: Config, workdir: Path, token: str, count: int) -> float:
    with bench_server("herald-delivery-preload", SERVE_CMD, cfg, workdir) as server:
        log(f"{server.name}: posting {count:,} events that each create one email message")
        stats = asyncio.run(
            preload(
                server.base_url,
                DeliveryEvents(f"{token}d", now=time.time()),
                count=count,
                clients=cfg.batch_clients,
                batch_size=cfg.batch_size,
            )
        )
    if stats.failed_batches:
        raise BenchError(f"delivery preload failed: {stats.error_samples}")
    return round(stats.events_per_s, 1)


def _measure(
    provider: str, cfg: Config, workdir: Path, count: int, errors: list[str]
) -> dict[str, Any]:
    db = workdir / "herald.db"
    if provider == "stub":
        figures = _drain(provider, cfg, workdir, count, [])
        details, problems = _stub_checks(workdir, count)
    else:
        with bench_server("webhook-receiver", RECEIVER_CMD, cfg, workdir / "receiver") as rx:
            rules = _webhook_rules(workdir / "rules", f"{rx.base_url}/hook")
            figures = _drain(provider, cfg, workdir, count, ["--rules", str(rules)])
            details, problems = _receiver_checks(rx, db)
    statuses = status_counts(db)
    if statuses != {"sent": count}:
        problems.insert(0, f"expected {count} sent, found {statuses}")
    figures["checks"] = {"statuses": statuses} | details | {"problems": problems}
    errors.extend(f"delivery {provider}: {p}" for p in problems)
    return figures


def _drain(
    provider: str, cfg: Config, workdir: Path, count: int, extra: list[str]
) -> dict[str, Any]:
    argv = server_argv(WORKER_CMD, port=0, workdir=workdir) + extra
    name = f"herald-worker-{provider}"
    log(f"{name}: draining {count:,} messages")
    timeout_s = 60 + count / 100
    started = time.perf_counter()
    with running_process(name, argv, workdir=workdir, env=bench_env(cfg)) as (process, log_path):
        try:
            drain = wait_drained(
                workdir / "herald.db", process, started=started, messages=count, timeout_s=timeout_s
            )
        except DrainError as exc:
            raise BenchError(f"{name}: {exc}; log {log_path}") from None
    figures = drain.summary() | {
        "sent_span_messages_per_s": _rounded(sent_span_rate(workdir / "herald.db"))
    }
    log(f"{name}: {drain.messages_per_s:,.0f} messages/s ({drain.wall_s:.1f} s with start-up)")
    return figures


def _stub_checks(workdir: Path, count: int) -> tuple[dict[str, Any], list[str]]:
    """One line per message in the stub's ``outbox.jsonl``, no message id twice."""
    path = workdir / "outbox.jsonl"
    ids = [orjson.loads(line)["message_id"] for line in path.read_bytes().splitlines() if line]
    problems = []
    if len(ids) != count or len(set(ids)) != count:
        problems.append(f"outbox.jsonl has {len(ids)} lines, {len(set(ids))} distinct ids")
    return {"outbox_lines": len(ids)}, problems


def _receiver_checks(rx: Server, db: Path) -> tuple[dict[str, Any], list[str]]:
    """One request per sent message, each message id exactly once as Idempotency-Key."""
    with httpx.Client(base_url=rx.base_url, timeout=30, trust_env=False) as client:
        stats = client.get("/stats").raise_for_status().json()
        keys = set(client.get("/keys").raise_for_status().json())
    sent = sent_message_ids(db)
    duplicates = stats["requests"] - stats["missing_key"] - stats["distinct_keys"]
    problems = []
    if stats["requests"] != len(sent):
        problems.append(f"receiver got {stats['requests']} requests for {len(sent)} sent")
    if duplicates or stats["missing_key"]:
        problems.append(f"{duplicates} repeated and {stats['missing_key']} missing keys")
    if keys != sent:
        problems.append(
            f"{len(sent - keys)} sent ids never received, {len(keys - sent)} unknown keys"
        )
    return stats | {"duplicate_keys": duplicates, "keys_match_sent": keys == sent}, problems


def _webhook_rules(folder: Path, url: str) -> Path:
    """The packaged rule file plus a webhook email provider, with its templates beside it."""
    package = importlib.resources.files("herald.rules")
    folder.mkdir(parents=True, exist_ok=True)
    with importlib.resources.as_file(package / "templates") as templates:
        shutil.copytree(templates, folder / "templates")
    document = yaml.safe_load((package / "default.yaml").read_text())
    document.setdefault("providers", {})["email"] = {"type": "webhook", "url": url}
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
