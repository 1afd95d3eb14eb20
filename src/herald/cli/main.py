"""The ``herald`` command line: serving, and the commands of the other modules."""

from __future__ import annotations

import os
import signal
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.descriptors import make_room_for_connections
from herald.cli.listening import check_serve_ports, http_url
from herald.cli.maintenance import db_app, prune
from herald.cli.messages import messages_app
from herald.cli.options import (
    DatabaseOpt,
    RulesOpt,
    default_of,
    settings_from,
    warn_of_unknown_variables,
)
from herald.cli.output import fail
from herald.cli.preflight import preflight
from herald.cli.rules import rules_app
from herald.cli.users import users_app
from herald.cli.worker import say_waiting_of_rules_gone, warn_of_a_metrics_host_alone, worker
from herald.config import Settings
from herald.observability.operator_lines import say

if TYPE_CHECKING:
    from herald.delivery.plan import DeliveryPlan
    from herald.rules.definition import RuleSet

app = typer.Typer(
    help="Herald: event-triggered messaging with an audit.\n\n"
    "`serve` reads every HERALD_* setting, `worker` those of delivery (see their --help); "
    "the other commands read only the few they use (HERALD_DATABASE_URL, HERALD_RULES "
    "and, for `rules check` and `users forget`, HERALD_OUTBOX_FILE), so a bad value of a "
    "setting only the server reads, such as HERALD_PORT, stops none of them.",
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
app.add_typer(users_app, name="users")


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
    max_connections: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="the most connections each API process keeps open; one more is answered "
            f"503 (default {default_of('max_connections')}; env HERALD_MAX_CONNECTIONS)",
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
    with HERALD_INGEST_TOKEN, /events does. Binding beyond loopback needs both, each of
    16 characters at least.

    Other settings come from the environment alone: HERALD_METRICS_PORT and
    HERALD_METRICS_HOST (the delivering process's metrics), HERALD_LOG_LEVEL,
    HERALD_LOG_FORMAT, HERALD_OUTBOX_FILE, HERALD_OPENTELEMETRY,
    HERALD_SQLITE_FLUSH_EACH_COMMIT, HERALD_POSTGRES_STATEMENT_TIMEOUT,
    HERALD_CLOCK_SKEW (seconds an event's time may be ahead of this server's clock, 300
    by default), and HERALD_PUBLIC_URL with HERALD_UNSUBSCRIBE_KEY (unsubscribe links in
    marketing email): see the README.
    """
    from herald.observability.logging import configure_logging

    if dispatcher is False and dispatcher_process is not None:
        # Given together on the command line, one is a mistake: which, only its author knows.
        # (Their variables may still say so together, as a deployment's shared defaults.)
        delivery = (
            "--dispatcher-process delivers from a child process"
            if dispatcher_process
            else "--dispatcher-inline delivers on the API's event loop"
        )
        fail(f"--no-dispatcher delivers nothing and {delivery}: give one of them", code=2)
    settings = settings_from(
        Settings,
        host=host,
        port=port,
        database_url=database,
        rules=rules,
        workers=workers,
        max_connections=max_connections,
        dispatcher=dispatcher,
        dispatcher_process=dispatcher_process,
    )
    configure_logging(settings.log_level, settings.log_format)  # uvicorn's lines too
    warn_of_unknown_variables(settings, os.environ)
    warn_of_a_metrics_host_alone(settings)
    problem = settings.exposure_problem()
    if problem:
        fail(problem, code=2)
    problem = settings.unsubscribe_problem()
    if problem:
        fail(problem)
    make_room_for_connections(settings)
    check_serve_ports(settings)
    ruleset, plan = preflight(settings, create_database=True)
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
        _say_inline_delivery(settings, ruleset, plan)
    _say_where_metrics_go(settings, inline=settings.dispatcher and not apart)
    _run_uvicorn(settings, dispatcher_process=apart)


app.command()(worker)


def _run_uvicorn(settings: Settings, *, dispatcher_process: bool) -> None:
    """Serve the API with uvicorn until it is stopped, beside a dispatcher process when
    ``dispatcher_process``."""
    import uvicorn

    from herald.cli.dispatcher_process import DispatcherProcess
    from herald.cli.http_protocol import RequestDeadlineProtocol
    from herald.observability.shared_metrics import metrics_shared_by

    # uvicorn re-raises the signal that stopped it once it has shut down: let SIGTERM then
    # unwind as an exception, not end the process at once, so the dispatcher stops too.
    # (A single process only: with --workers N, uvicorn's supervisor returns.)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with (
        metrics_shared_by(settings.workers),
        DispatcherProcess() if dispatcher_process else nullcontext(),
    ):
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
            # A line a request, at DEBUG alone: an operator asking for every line looks
            # for the requests too, and at INFO each cost ingestion time for no reader.
            access_log=settings.log_level == "DEBUG",
            lifespan="on",
            http=RequestDeadlineProtocol,
            # Applied by the protocol to each connection (see its __init__), carried by
            # uvicorn's config to every API process.
            limit_concurrency=settings.max_connections,
        )


def _say_inline_delivery(settings: Settings, ruleset: RuleSet, plan: DeliveryPlan) -> None:
    """For API processes that deliver themselves: what each channel goes through, and the
    messages waiting for rules the rule file no longer has."""
    from herald.store.database import Database

    say(settings, "delivering " + "; ".join(plan.channels_described()))
    opened = Database(settings.database_url)
    say_waiting_of_rules_gone(settings, opened, ruleset)
    opened.dispose()


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
    from herald.store.database_url import shown_url

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


def _exit_on_signal(_signum: int, _frame: object) -> None:
    """A server asked to stop has done as asked: exit 0, as it does with ``--workers N``
    (whose supervisor takes the signal itself) and as ``herald worker`` does. An exit
    status of 143 (128 + SIGTERM) is a failure to systemd, which takes a death by the
    signal itself as clean but not that status: every deployment's stop marked the
    service failed."""
    raise SystemExit(0)


app.command()(prune)  # after serve and worker, so --help lists them first


def main() -> None:
    app()
