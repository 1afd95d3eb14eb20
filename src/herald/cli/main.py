"""The ``herald`` command line: serving, and the command groups of the other modules."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.common import (
    DatabaseOpt,
    RulesOpt,
    default_of,
    fail,
    preflight,
    say,
    settings_from,
    warn_of_unknown_variables,
)
from herald.cli.listening import check_serve_ports, host_port, http_url
from herald.cli.maintenance import db_app, messages_app, prune
from herald.cli.rules import rules_app
from herald.config import Settings, WorkerSettings
from herald.orphans import parent_gone

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

    from herald.bootstrap import Runtime

app = typer.Typer(
    help="Herald: event-triggered messaging with an audit.\n\n"
    "`serve` reads every HERALD_* setting, `worker` those of delivery (see their --help); "
    "the other commands read only the few they use (HERALD_DATABASE_URL, HERALD_RULES "
    "and, for `rules check`, HERALD_OUTBOX_FILE), so a bad value of a setting only the "
    "server reads, such as HERALD_PORT, stops none of them.",
    # Help texts are reflowed to the terminal's width; `code` shows as code.
    rich_markup_mode="markdown",
    no_args_is_help=True,
    # A crash's traceback would print each frame's variables: the database URL, with its
    # password, among them.
    pretty_exceptions_show_locals=False,
)
app.add_typer(rules_app, name="rules")
app.add_typer(db_app, name="db")
app.add_typer(messages_app, name="messages")


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST", help=f"address to bind (default {default_of('host')}; env HERALD_HOST)"
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            help=f"port (default {default_of('port')}, 0 for a free one; env HERALD_PORT)",
        ),
    ] = None,
    database: DatabaseOpt = None,
    rules: RulesOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="N", help=f"API processes (default {default_of('workers')}; env HERALD_WORKERS)"
        ),
    ] = None,
    dispatcher: Annotated[
        bool | None,
        typer.Option(
            "--dispatcher/--no-dispatcher",
            help="deliver messages (the default) or not (env HERALD_DISPATCHER)",
        ),
    ] = None,
    dispatcher_process: Annotated[
        bool | None,
        typer.Option(
            "--dispatcher-process/--dispatcher-inline",
            help="deliver from a child process, on another core (the default), or on the "
            "API's event loop (env HERALD_DISPATCHER_PROCESS)",
        ),
    ] = None,
) -> None:
    """Run the HTTP API and, by default, a dispatcher in a child process.

    With HERALD_ADMIN_TOKEN set, /audit, /rules and /users ask for it as a bearer token;
    with HERALD_INGEST_TOKEN, /events does. Binding beyond loopback needs both.

    Other settings come from the environment alone: HERALD_METRICS_PORT and
    HERALD_METRICS_HOST (the delivering process's metrics), HERALD_LOG_LEVEL,
    HERALD_LOG_FORMAT, HERALD_OUTBOX_FILE, HERALD_OPENTELEMETRY,
    HERALD_SQLITE_FLUSH_EACH_COMMIT and HERALD_POSTGRES_STATEMENT_TIMEOUT: see the README.
    """
    import uvicorn

    from herald.cli.dispatcher_process import DispatcherProcess
    from herald.observability.logging import configure_logging

    settings = settings_from(
        Settings,
        host=host,
        port=port,
        database_url=database,
        rules=rules,
        workers=workers,
        dispatcher=dispatcher,
        dispatcher_process=dispatcher_process,
    )
    configure_logging(settings.log_level, settings.log_format)  # uvicorn's lines too
    warn_of_unknown_variables(settings, os.environ)
    problem = settings.exposure_problem()
    if problem:
        fail(problem, code=2)
    check_serve_ports(settings)
    plan = preflight(settings, create_database=True)
    apart = settings.dispatcher and settings.dispatcher_process
    # With a dispatcher process of their own, the API processes deliver nothing.
    # Several API processes are uvicorn's children: each stops when this process is gone.
    _hand_down(
        settings.model_copy(
            update={
                "dispatcher": settings.dispatcher and not apart,
                "server_pid": os.getpid() if settings.workers > 1 else None,
                "loopback_requests_only": not (settings.admin_token and settings.ingest_token),
            }
        )
    )
    _say_serving(settings, apart=apart)
    if settings.dispatcher and not apart:  # a dispatcher process says so itself
        say(settings, "delivering " + "; ".join(plan.channels_described()))
    _say_where_metrics_go(settings, inline=settings.dispatcher and not apart)
    # uvicorn re-raises the signal that stopped it once it has shut down: let SIGTERM then
    # unwind as an exception, not end the process at once, so the dispatcher stops too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with DispatcherProcess() if apart else nullcontext():
        uvicorn.run(
            "herald.api.factory:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level.lower(),
            # uvicorn's own lines go through Herald's handler, so that they share its
            # format (one JSON object a line with HERALD_LOG_FORMAT=json).
            log_config=None,
            access_log=False,
            lifespan="on",
        )


@app.command()
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
    HERALD_SQLITE_FLUSH_EACH_COMMIT and HERALD_POSTGRES_STATEMENT_TIMEOUT apply here as
    they do to `herald serve`; the settings of the API alone (HERALD_HOST, HERALD_PORT,
    the tokens, HERALD_WORKERS, ...) are not read."""
    from herald.bootstrap import build_runtime
    from herald.delivery.dispatcher import LEASE_S
    from herald.observability.logging import configure_logging
    from herald.store.database import shown_url

    settings = settings_from(
        WorkerSettings,
        database_url=database,
        rules=rules,
        dispatcher=True,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    configure_logging(settings.log_level, settings.log_format)
    if parent_pid is None:  # serve's own dispatcher: serve has said so already
        warn_of_unknown_variables(settings, os.environ)
    # A dispatcher delivers what an API stored: a database it would have to create is
    # the wrong one.
    preflight(settings, create_database=False)
    # With a dispatcher (settings.dispatcher is on), and no API: no ingestion metrics.
    runtime = build_runtime(settings, ingests=False)
    assert runtime.dispatcher is not None
    worker_id = runtime.dispatcher.worker_id
    stop_metrics = _serve_metrics(settings, runtime.metrics.registry)

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop(sig: signal.Signals) -> None:
            if stopping.is_set():
                if sig is signal.SIGINT:
                    # A second Ctrl-C: the operator would rather not wait. Gone now, as if
                    # killed: what it was sending is claimed, and sent again later.
                    say(settings, _STOPPED_AT_ONCE)
                    sys.stderr.flush()  # os._exit flushes nothing
                    os._exit(128 + signal.SIGINT)
                return
            # Said, as a stop can take up to a lease: an operator met with silence would
            # kill the process, and the sends it cut off would be made again later.
            say(
                settings,
                "stopping: the sends under way finish and are recorded first (within "
                f"{LEASE_S:.0f} s; Ctrl-C again stops at once); killed before, it leaves "
                "them to be sent again once their claims run out",
            )
            stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        say(settings, f"dispatcher {worker_id} on {shown_url(settings.database_url)}")
        say(settings, "delivering " + "; ".join(runtime.delivery.channels_described()))
        _say_waiting_of_rules_gone(settings, runtime)
        watch = asyncio.create_task(_stop_without_parent(settings, parent_pid, stopping))
        try:
            await runtime.deliver(stopping)
        finally:
            watch.cancel()

    try:
        asyncio.run(run())
    finally:
        if stop_metrics is not None:
            stop_metrics()


_STOPPED_AT_ONCE = (
    "stopped at once: the messages it was sending may have gone out, and will be sent "
    "again once their claims run out (the receiver sees the same Idempotency-Key)"
)


def _say_waiting_of_rules_gone(settings: WorkerSettings, runtime: Runtime[WorkerSettings]) -> None:
    """Say which messages waiting to be sent belong to rules the rule file no longer
    has: they were written when decided, and go out all the same unless cancelled. An
    operator who took a rule out to stop it would otherwise see them sent in silence."""
    from herald.store.unit_of_work import ReadOnly

    try:
        with ReadOnly(runtime.database) as read:
            waiting = read.outbox.waiting_by_rule(
                except_rules={rule.id for rule in runtime.ruleset.rules}
            )
    except Exception:  # the database gone meanwhile: the rounds wait for it, and say so
        return
    if waiting:
        listed = ", ".join(f"{rule}: {count}" for rule, count in sorted(waiting.items()))
        say(
            settings,
            f"messages waiting to be sent belong to rules the rule file "
            f"{runtime.ruleset.source} does not have ({listed}): they are sent as written "
            "when decided; `herald messages cancel --rule RULE` cancels them",
            level=logging.WARNING,  # alerting on warnings should see it
        )


def _hand_down(api_settings: Settings) -> None:
    """Put ``api_settings`` in this process's environment as ``HERALD_*`` variables: the
    API processes and the dispatcher process started from here read theirs from it. A
    setting that is None is taken out, so that they read None too: a HERALD_SERVER_PID
    left in the environment made a lone API process stop as soon as it started, watching
    a process that was not its server."""
    for name, value in api_settings.model_dump().items():
        variable = f"HERALD_{name.upper()}"
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = str(value)


def _say_serving(settings: Settings, *, apart: bool) -> None:
    """The line that tells the operator where the server is and what it runs."""
    from herald.store.database import shown_url

    delivery = (
        "by a dispatcher process" if apart else "in the API" if settings.dispatcher else "off"
    )
    # Port 0 asks the system for a free one, which uvicorn's "running on" line names.
    where = (
        http_url(settings.host, settings.port)
        if settings.port
        else f"a free port of {settings.host}"
    )
    say(
        settings,
        f"Herald on {where} (docs at /docs), "
        f"database {shown_url(settings.database_url)}, {settings.workers} API "
        f"process{'es' if settings.workers > 1 else ''}, "
        f"delivery {delivery}",
    )


def _say_where_metrics_go(settings: Settings, *, inline: bool) -> None:
    """The metrics port belongs to the process that delivers (a dispatcher process says
    so itself when it starts serving it)."""
    if settings.metrics_port is None:
        return
    if inline:
        url = http_url(settings.metrics_host, settings.metrics_port, "/metrics")
        say(settings, f"metrics on {url} (as at the API's /metrics)")
    elif not settings.dispatcher:
        say(
            settings,
            "HERALD_METRICS_PORT is not served: this server delivers nothing, and the "
            "metrics port is for the process that does (herald worker --metrics-port)",
        )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


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
    from herald.observability.metrics import serve_metrics

    host, port = settings.metrics_host, settings.metrics_port
    try:
        stop = serve_metrics(registry, host, port)
    except OSError as exc:
        fail(f"cannot serve metrics on {host_port(host, port)}: {exc.strerror or exc}")
    say(settings, f"metrics on {http_url(host, port, '/metrics')}")
    return stop


app.command()(prune)  # after serve and worker, so --help lists them first


def main() -> None:
    app()
