"""The ``herald`` command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from herald.config import Settings

app = typer.Typer(help="Herald: event-triggered messaging with an audit.", no_args_is_help=True)
rules_app = typer.Typer(help="Work with rule files.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
messages_app = typer.Typer(help="Outbound messages.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(db_app, name="db")
app.add_typer(messages_app, name="messages")
console = Console(stderr=True, soft_wrap=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", help="sqlite:///path.db or postgresql://... [env HERALD_DATABASE_URL]"
    ),
]
RulesOpt = Annotated[str | None, typer.Option("--rules", help="rule file [env HERALD_RULES]")]


def _settings(**overrides: object) -> Settings:
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except Exception as exc:
        _fail(f"invalid settings: {exc}")


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print("error:", message, style="bold red", markup=False)
    raise typer.Exit(code)


def _delivery_problem(rules_path: Path) -> str | None:
    """What is wrong with the file's `providers` and `delivery` sections, if anything
    (the rule loader checks the rest). Building the plan opens nothing."""
    import yaml

    from herald.delivery.setup import DeliveryConfigError, build_delivery

    document = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    try:
        build_delivery(document, outbox=Path(os.devnull))
    except DeliveryConfigError as exc:
        return str(exc)
    return None


def _preflight(settings: Settings) -> None:
    """Fail before serving, with one clear line, on what would otherwise fail later."""
    from herald.rules.loader import RuleFileError, load_ruleset
    from herald.store.database import Database, DatabaseUrlError
    from herald.store.migrate import SchemaOutdated, ensure_current

    try:
        ruleset = load_ruleset(settings.rules)
        database = Database(settings.database_url)
    except (RuleFileError, DatabaseUrlError) as exc:
        _fail(str(exc))
    problem = _delivery_problem(Path(ruleset.source))
    if problem:
        database.dispose()
        _fail(f"{ruleset.source}: {problem}")
    try:
        ensure_current(database, auto_upgrade=database.is_sqlite)
    except SchemaOutdated as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f"cannot reach the database: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        database.dispose()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind [env HERALD_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [env HERALD_PORT]")] = None,
    database: DatabaseOpt = None,
    rules: RulesOpt = None,
    workers: Annotated[int | None, typer.Option(help="API processes [env HERALD_WORKERS]")] = None,
    dispatcher: Annotated[
        bool | None, typer.Option("--dispatcher/--no-dispatcher", help="deliver in this process")
    ] = None,
) -> None:
    """Run the HTTP API (and, by default, the dispatcher)."""
    import uvicorn

    settings = _settings(
        host=host,
        port=port,
        database_url=database,
        rules=rules,
        workers=workers,
        dispatcher=dispatcher,
    )
    problem = settings.exposure_problem()
    if problem:
        _fail(problem, code=2)
    _preflight(settings)
    # Worker processes read their settings from the environment.
    for name, value in settings.model_dump().items():
        if value is not None:
            os.environ[f"HERALD_{name.upper()}"] = str(value)
    console.print(
        f"Herald on http://{settings.host}:{settings.port} (docs at /docs), "
        f"database {settings.database_url}, {settings.workers} worker(s)"
    )
    uvicorn.run(
        "herald.api.factory:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
    )


@app.command()
def worker(database: DatabaseOpt = None, rules: RulesOpt = None) -> None:
    """Run a dispatcher alone (no HTTP), e.g. beside API processes on PostgreSQL."""
    from herald.bootstrap import build_runtime
    from herald.observability.logging import configure_logging

    settings = _settings(database_url=database, rules=rules, dispatcher=True)
    configure_logging(settings.log_level, settings.log_format)
    _preflight(settings)

    async def run() -> None:
        runtime = build_runtime(settings, with_dispatcher=True)
        assert runtime.dispatcher is not None
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        console.print(f"dispatcher {runtime.dispatcher.worker_id} on {settings.database_url}")
        runtime.checkpointer.start()  # a worker alone on SQLite must keep its log short too
        try:
            await runtime.dispatcher.run(stopping)
        finally:
            for provider in runtime.delivery.providers.values():
                await provider.aclose()
            await asyncio.to_thread(runtime.checkpointer.stop)
            runtime.database.dispose()

    asyncio.run(run())


@rules_app.command("check")
def rules_check(
    path: Annotated[Path | None, typer.Argument(help="rule file (default: packaged)")] = None,
) -> None:
    """Validate a rule file (conditions, channels, limits, templates) and list its rules."""
    from herald.rules.loader import RuleFileError, load_ruleset

    try:
        ruleset = load_ruleset(path)
        problem = _delivery_problem(Path(ruleset.source))
        if problem:
            raise RuleFileError(ruleset.source, [problem])
    except RuleFileError as exc:
        console.print(f"{exc.path}: {len(exc.problems)} problem(s)", style="bold red", markup=False)
        for line in exc.problems:
            console.print(f"  - {line}", markup=False)
        raise typer.Exit(1) from None
    # A list rather than a table: it stays readable at any width and through a pipe.
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"{ruleset.source} (version {ruleset.version})", markup=False)
    for rule in ruleset.rules:
        out.print(
            f"\n[bold]{rule.id}[/] v{rule.version}: on {rule.on}, {rule.channel}, "
            f"{rule.category.value}, {rule.limit.value}"
            + (f", template {rule.template}" if rule.template else "")
        )
        if rule.after:
            hours = int(rule.after.within.total_seconds() // 3600)
            out.print(f"  after {rule.after.event_type} within {hours}h", markup=False)
        if rule.condition:
            out.print(f"  when {rule.condition.source}", markup=False)
    out.print(f"\nOK: {len(ruleset.rules)} rules over {len(ruleset.event_types)} event types")


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = None) -> None:
    """Migrate the database schema to this version of Herald."""
    from herald.store.database import Database
    from herald.store.migrate import current_revision, upgrade

    settings = _settings(database_url=database)
    db = Database(settings.database_url)
    before = current_revision(db)
    upgrade(db)
    console.print(f"schema: {before or 'empty'} -> {current_revision(db)}")
    db.dispose()


@messages_app.command("retry")
def messages_retry(
    message_id: Annotated[str | None, typer.Option("--message-id", help="one dead letter")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="every dead letter")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Put dead letters (status failed) back in the queue."""
    from herald.bootstrap import utc_now
    from herald.domain.timeutil import to_micros
    from herald.store.database import Database
    from herald.store.unit_of_work import UnitOfWork

    if (message_id is None) == (not failed):
        _fail("give either --message-id ID or --failed", code=2)
    db = Database(_settings(database_url=database).database_url)
    with UnitOfWork(db) as uow:
        count = uow.outbox.requeue(now_us=to_micros(utc_now()), message_id=message_id)
        uow.commit()
    db.dispose()
    if message_id and count == 0:
        _fail(f"no dead letter {message_id}")
    console.print(f"re-queued {count} message(s)")


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([dh])\s*", text)
    if not match:
        raise typer.BadParameter("use a number of days or hours, e.g. 400d or 36h")
    amount = int(match[1])
    return timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount)


@app.command()
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="e.g. 400d")],
    database: DatabaseOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="rows per transaction")] = 5000,
    rules: RulesOpt = None,
) -> None:
    """Delete events and finished messages older than an age, in small transactions.

    Messages of rules limited once per user are redacted instead of deleted, so that
    their limit still holds after the history is gone."""
    from herald.bootstrap import utc_now
    from herald.rules.definition import Limit
    from herald.rules.loader import RuleFileError, load_ruleset
    from herald.service.retention import prune_history
    from herald.store.database import Database, DatabaseUrlError
    from herald.store.migrate import SchemaOutdated, ensure_current

    age = parse_age(older_than)
    settings = _settings(database_url=database, rules=rules)
    try:
        ruleset = load_ruleset(settings.rules)
    except RuleFileError as exc:
        _fail(str(exc))
    lifetime = {rule.id for rule in ruleset.rules if rule.limit is Limit.ONCE_PER_USER}
    try:
        db = Database(settings.database_url)
    except DatabaseUrlError as exc:
        _fail(str(exc))
    try:
        # Deleting from a schema this version does not know could delete the wrong rows.
        ensure_current(db, auto_upgrade=False)
    except SchemaOutdated as exc:
        db.dispose()
        _fail(str(exc))
    cutoff = utc_now() - age
    totals = prune_history(
        db,
        cutoff=cutoff,
        batch_size=batch_size,
        progress=lambda kind, n: console.print(
            f"  {kind}: {n} {'redacted' if kind == 'redacted' else 'deleted'} so far"
        ),
        keep_rules=lifetime,
    )
    db.dispose()
    console.print(
        f"pruned {totals['events']} events and {totals['messages']} messages "
        f"from before {cutoff:%Y-%m-%d}; redacted {totals.get('redacted', 0)} messages "
        "kept for their once-per-user limits"
    )


def main() -> None:
    app()
