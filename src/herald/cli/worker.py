"""``herald worker``: a dispatcher alone, in a process of its own; also the child process
that delivers for ``herald serve``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.listening import cannot_listen, http_url
from herald.cli.options import (
    DatabaseOpt,
    RulesOpt,
    default_of,
    settings_from,
    warn_of_unknown_variables,
)
from herald.cli.output import fail
from herald.cli.preflight import preflight
from herald.config import WorkerSettings
from herald.delivery.stop_lines import say_stopped, say_stopping
from herald.observability.operator_lines import say
from herald.observability.shared_metrics import count_alone
from herald.orphans import parent_gone

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

    from herald.bootstrap import Runtime
    from herald.rules.definition import RuleSet
    from herald.store.database import Database


def worker(
    database: DatabaseOpt = None,
    rules: RulesOpt = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="serve Prometheus metrics on this port (env HERALD_METRICS_PORT)"
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST",
            help=f"address for the metrics (default {default_of('metrics_host')}; "
            "env HERALD_METRICS_HOST)",
        ),
    ] = None,
    parent_pid: Annotated[
        int | None, typer.Option(hidden=True, help="stop when this process is gone")
    ] = None,
) -> None:
    """Run a dispatcher alone, beside any number of `herald serve --no-dispatcher` API
    processes and other workers on the same database (one machine's SQLite file, or
    PostgreSQL).

    HERALD_LOG_LEVEL, HERALD_LOG_FORMAT, HERALD_OUTBOX_FILE,
    HERALD_SQLITE_FLUSH_EACH_COMMIT, HERALD_POSTGRES_STATEMENT_TIMEOUT, HERALD_PUBLIC_URL
    and HERALD_UNSUBSCRIBE_KEY (the unsubscribe links of marketing email) apply here as
    they do to `herald serve`; the settings of the API alone (HERALD_HOST, HERALD_PORT,
    the tokens, HERALD_WORKERS, ...) are not read."""
    # Before prometheus_client is imported (with the runtime): a worker beside others
    # would serve their deliveries as its own, and Prometheus, summing the workers,
    # count each several times.
    count_alone()
    from herald.bootstrap import build_runtime
    from herald.observability.logging import configure_logging

    settings = settings_from(
        WorkerSettings,
        database_url=database,
        rules=rules,
        dispatcher=True,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    configure_logging(settings.log_level, settings.log_format)
    problem = settings.unsubscribe_problem()
    if problem:
        fail(problem)
    if parent_pid is None:  # serve's own dispatcher: serve has said so already
        warn_of_unknown_variables(settings, os.environ)
        warn_of_a_metrics_host_alone(settings)
    # A dispatcher delivers what an API stored: a database it would have to create is
    # the wrong one.
    preflight(settings, create_database=False)
    # With a dispatcher (settings.dispatcher is on), and no API: no ingestion metrics.
    runtime = build_runtime(settings, ingests=False)
    stop_metrics = _serve_metrics(settings, runtime.metrics.registry)
    try:
        asyncio.run(_deliver_until_stopped(settings, runtime, parent_pid))
    finally:
        if stop_metrics is not None:
            stop_metrics()


async def _deliver_until_stopped(
    settings: WorkerSettings, runtime: Runtime[WorkerSettings], parent_pid: int | None
) -> None:
    """Deliver until SIGINT or SIGTERM (or, for serve's dispatcher, its server gone), then
    finish the sends under way and record them."""
    from herald.store.database_url import shown_url

    assert runtime.dispatcher is not None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_stop_signal, settings, stopping, sig)
    say(
        settings, f"dispatcher {runtime.dispatcher.worker_id} on {shown_url(settings.database_url)}"
    )
    say(settings, "delivering " + "; ".join(runtime.delivery.channels_described()))
    say_waiting_of_rules_gone(settings, runtime.database, runtime.ruleset)
    watch = asyncio.create_task(_stop_without_parent(settings, parent_pid, stopping))
    try:
        await runtime.deliver(stopping)
    finally:
        watch.cancel()
    say_stopped(settings, runtime.dispatcher)


def _on_stop_signal(settings: WorkerSettings, stopping: asyncio.Event, sig: signal.Signals) -> None:
    """The first SIGINT or SIGTERM sets ``stopping``; a second SIGINT ends the process."""
    if stopping.is_set():
        if sig is signal.SIGINT:
            # A second Ctrl-C: the operator would rather not wait. Gone now, as if
            # killed: what it was sending is claimed, and sent again later.
            say(settings, _STOPPED_AT_ONCE)
            sys.stderr.flush()  # os._exit flushes nothing
            os._exit(128 + signal.SIGINT)
        return
    say_stopping(settings, ctrl_c_again_stops_at_once=True)
    stopping.set()


# A worker's metrics port is its option or the variable; serve's dispatcher process never
# meets a port taken, as serve checks it before it starts that process.
_METRICS_PORT_CHOSEN_BY = "--metrics-port or HERALD_METRICS_PORT"
_STOPPED_AT_ONCE = (
    "stopped at once: the messages it was sending may have gone out, and will be sent "
    "again once their claims run out (the receiver sees the same Idempotency-Key)"
)


def warn_of_a_metrics_host_alone(settings: WorkerSettings) -> None:
    """Say that a metrics host given without a port serves nothing: the operator who set
    one expects metrics there, and would otherwise find the port closed in silence."""
    if settings.metrics_port is None and "metrics_host" in settings.model_fields_set:
        say(
            settings,
            f"the metrics host {settings.metrics_host} is ignored without a metrics port: "
            "set HERALD_METRICS_PORT (a worker's --metrics-port) to serve the metrics",
            level=logging.WARNING,
        )


def say_waiting_of_rules_gone(
    settings: WorkerSettings, database: Database, ruleset: RuleSet
) -> None:
    """Say which messages waiting to be sent belong to rules the rule file no longer
    has: they were written when decided, and go out all the same unless cancelled. An
    operator who took a rule out to stop it would otherwise see them sent in silence."""
    from herald.store.unit_of_work import ReadOnly

    try:
        with ReadOnly(database) as read:
            waiting = read.outbox.waiting_by_rule(except_rules={rule.id for rule in ruleset.rules})
    except Exception:  # the database gone meanwhile: the rounds wait for it, and say so
        return
    if waiting:
        listed = ", ".join(f"{rule}: {count}" for rule, count in sorted(waiting.items()))
        say(
            settings,
            f"messages waiting to be sent belong to rules the rule file "
            f"{ruleset.source} does not have ({listed}): they are sent as written "
            "when decided; `herald messages cancel --rule RULE` cancels them",
            level=logging.WARNING,  # alerting on warnings should see it
        )


async def _stop_without_parent(
    settings: WorkerSettings, parent_pid: int | None, stopping: asyncio.Event
) -> None:
    """The dispatcher process of a `herald serve` killed outright stops within a second:
    an orphan would go on delivering, unseen, beside the next server's."""
    if parent_pid is None:
        return
    await parent_gone(parent_pid, every_s=1.0)
    say(settings, "the server that started this dispatcher is gone; stopping")
    stopping.set()


def _serve_metrics(
    settings: WorkerSettings, registry: CollectorRegistry
) -> Callable[[], None] | None:
    """Delivery counters and outbox gauges at /metrics, on a thread of their own; what
    stops them."""
    if settings.metrics_port is None:
        return None
    from herald.observability.metrics_port import serve_metrics

    host, port = settings.metrics_host, settings.metrics_port
    try:
        stop = serve_metrics(registry, host, port)
    except OSError as exc:
        fail(cannot_listen("metrics", host, port, exc, chosen_by=_METRICS_PORT_CHOSEN_BY))
    say(settings, f"metrics on {http_url(host, port, '/metrics')}")
    return stop
