"""Build a running Herald from settings: the only place where parts are wired together."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DBAPIError

from herald.config import StubFileSettings, WorkerSettings
from herald.delivery.dispatcher import Dispatcher
from herald.delivery.provider import DeliveryStatus
from herald.delivery.quiet_hours import HoldPolicy, hold_policy
from herald.delivery.setup import DeliveryPlan, plan_delivery
from herald.domain.unsubscribe_tokens import UnsubscribeLinks
from herald.observability.logging import database_said
from herald.observability.metrics import Metrics
from herald.rules.definition import RuleSet
from herald.rules.loader import load_rule_file
from herald.service.ingest import IngestResult
from herald.service.outbox_gauges import outbox_snapshot
from herald.service.writer import LoopWriter, ThreadWriter, Writer
from herald.store.checkpoints import Checkpointer
from herald.store.database import Database
from herald.store.database_errors import unavailable
from herald.store.database_url import normalise_url
from herald.store.migrate import ensure_current

log = logging.getLogger(__name__)

# The settings a runtime was built from: every setting for an API process, those of
# delivery alone for `herald worker`.
SettingsT = TypeVar("SettingsT", bound=WorkerSettings)


def utc_now() -> datetime:
    return datetime.now(UTC)


def load_rules_and_delivery(
    path: str | Path | None, *, outbox: Path, env: Mapping[str, str] | None = None
) -> tuple[RuleSet, DeliveryPlan]:
    """The rule set and the delivery plan of one rule file (the packaged one when ``path``
    is None); raises ``RuleFileError`` listing every problem in either, each named by the
    rule or setting it is in. Nothing is opened: this is also how a file is checked."""

    # A relative `ca_file` is beside the rule file, as its templates are.
    folder = Path(path).parent if path is not None else None

    def delivery(document: dict[str, Any], problems: list[str]) -> DeliveryPlan:
        return plan_delivery(document, problems, outbox=outbox, env=env, folder=folder)

    return load_rule_file(path, delivery)


@dataclass
class Runtime(Generic[SettingsT]):
    """What one process runs, built by ``build_runtime``: ``start`` and ``stop`` for an API
    process, ``deliver`` for a process that only delivers."""

    settings: SettingsT
    database: Database
    ruleset: RuleSet
    delivery: DeliveryPlan
    metrics: Metrics
    writer: Writer
    dispatcher: Dispatcher | None
    clock: Callable[[], datetime] = utc_now
    checkpointer: Checkpointer = field(init=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _dispatching: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.checkpointer = Checkpointer(self.database)

    async def start(self) -> None:
        """Start the checkpointer, the writer and, when there is one, the dispatcher on
        this event loop."""
        self.checkpointer.start()
        self.writer.start()
        if self.dispatcher is not None:
            self._dispatching = asyncio.create_task(self.dispatcher.run(self._stopping))

    async def stop(self) -> None:
        """Let the writer finish what it took, then the dispatcher its round; close the
        providers, stop the checkpointer and close the database's connections. The last
        three happen whatever failed before them (a dispatcher ended by a bug): an SMTP
        relay is still told goodbye, and the write-ahead log still checkpointed."""
        try:
            await asyncio.to_thread(self.writer.stop)
            self._stopping.set()
            if self._dispatching is not None:
                await self._dispatching
        finally:
            try:
                for provider in self.delivery.providers.values():
                    await provider.aclose()
            finally:
                await asyncio.to_thread(self.checkpointer.stop)
                self.database.dispose()

    async def deliver(self, stopping: asyncio.Event) -> None:
        """Run a process that only delivers (``herald worker``): the checkpointer, and the
        dispatcher in this task until ``stopping`` is set; then stop as ``stop`` does. The
        writer is never started: such a process ingests nothing."""
        if self.dispatcher is None:
            raise RuntimeError("this runtime has no dispatcher (settings.dispatcher is off)")
        self.checkpointer.start()  # a worker alone on SQLite must keep its log short too
        try:
            await self.dispatcher.run(stopping)
        finally:
            await self.stop()


def outbox_path(settings: StubFileSettings) -> Path:
    """The stub provider's file, as an absolute path: ``HERALD_OUTBOX_FILE``, else beside
    the database (an SQLite file's folder; the working directory for PostgreSQL). Raises
    ``DatabaseUrlError`` for a URL Herald cannot use."""
    if settings.outbox_file:
        # Absolute, as the operator's lines name it: the file the process opens, whatever
        # folder a log of it is read from.
        return Path(settings.outbox_file).absolute()
    url = normalise_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return Path(url.database or "herald.db").resolve().parent / "outbox.jsonl"
    return Path.cwd() / "outbox.jsonl"


def worker_id() -> str:
    """``host:pid-random``, new at each start: the host and pid for an operator reading the
    log, the random part because they are not unique. Containers sharing the host's
    network share its name, and each may run Herald as its PID 1: two dispatchers of one
    name would record, and release, each other's claims. Within the 64 characters a claim
    stores, whatever the host's name."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}-{secrets.token_hex(6)}"


def build_runtime(
    settings: SettingsT,
    *,
    clock: Callable[[], datetime] = utc_now,
    ingests: bool = True,
    database_may_be_away: bool = False,
) -> Runtime[SettingsT]:
    """Everything a process needs, built from ``settings``; nothing is started yet.
    ``ingests``: the process serves the API (not so for `herald worker`).
    ``database_may_be_away``: a database that cannot be reached to check its schema is
    said and left for later, not refused (see ``_check_schema``).

    Raises ``RuleFileError`` for a rule file with problems, ``DatabaseUrlError`` for a
    database URL Herald cannot use, and ``SchemaMismatch`` for a schema it cannot run on."""
    database = Database(
        settings.database_url,
        flush_each_commit=settings.sqlite_flush_each_commit,
        statement_timeout_s=settings.postgres_statement_timeout,
    )
    ruleset, plan = load_rules_and_delivery(settings.rules, outbox=outbox_path(settings))
    _check_schema(database, away_ok=database_may_be_away)
    metrics = Metrics(ingests=ingests, delivers=settings.dispatcher)
    hold = hold_policy(plan.quiet_hours)
    links = _unsubscribe_links(settings)
    dispatcher = (
        _dispatcher(database, plan, metrics, clock, hold, links) if settings.dispatcher else None
    )

    def on_commit(results: list[IngestResult]) -> None:
        metrics.observe_commit(len(results))
        metrics.count_many(
            metrics.decisions,
            ((decision.rule, decision.outcome.value) for r in results for decision in r.decisions),
        )
        if dispatcher is not None:
            dispatcher.wake()

    writer = _writer(database, ruleset, clock, hold, on_commit)
    metrics.watch_outbox(lambda: outbox_snapshot(database, now=clock()))
    return Runtime(settings, database, ruleset, plan, metrics, writer, dispatcher, clock)


def _check_schema(database: Database, *, away_ok: bool) -> None:
    """Make sure the schema is current (an SQLite one is upgraded). With ``away_ok``, a
    database that does not answer now is logged and the check left to /readyz: an API
    process that uvicorn restarts (one of ``--workers N`` that died) during an outage
    otherwise failed its start-up, and uvicorn then stopped the whole server, the other
    processes with it, for an outage the running ones were riding out with 503s."""
    try:
        ensure_current(database, auto_upgrade=database.is_sqlite)
    except DBAPIError as exc:
        if not (away_ok and unavailable(exc)):
            raise
        log.warning(
            "the database cannot be reached to check its schema (%s): serving anyway; "
            "requests that need it answer 503 until it answers, and /readyz says whether "
            "its schema is current",
            database_said(exc),
        )


def _dispatcher(
    database: Database,
    plan: DeliveryPlan,
    metrics: Metrics,
    clock: Callable[[], datetime],
    hold: HoldPolicy,
    links: UnsubscribeLinks | None,
) -> Dispatcher:
    """The dispatcher delivering with ``plan``'s providers and policy, counting each
    outcome in ``metrics``."""
    return Dispatcher(
        database,
        plan.providers,
        worker_id=worker_id(),
        clock=clock,
        retry=plan.retry,
        rate_limits=plan.rate_limits(time.monotonic),
        on_result=lambda channel, status: _count_delivery(metrics, channel, status),
        on_send_seconds=metrics.observe_delivery,
        inline_storage=database.is_sqlite,
        # Workers on several hosts share a PostgreSQL database, and its clock, not theirs,
        # times their leases. SQLite's dispatchers all share their host's.
        database_time=not database.is_sqlite,
        # Quiet hours hold a retry or a re-queued message too, not only a new one.
        hold=hold,
        hold_channels=frozenset(plan.quiet_hours),
        unsubscribe_links=links,
    )


def _unsubscribe_links(settings: WorkerSettings) -> UnsubscribeLinks | None:
    """The links marketing messages carry, when both of their settings are set (the
    command refused one without the other before building anything)."""
    if settings.public_url is None or settings.unsubscribe_key is None:
        return None
    return UnsubscribeLinks(settings.public_url, settings.unsubscribe_key)


def _writer(
    database: Database,
    ruleset: RuleSet,
    clock: Callable[[], datetime],
    hold: HoldPolicy,
    on_commit: Callable[[list[IngestResult]], None],
) -> Writer:
    """The group-commit writer that suits the database: on the event loop for SQLite,
    on threads for PostgreSQL."""
    if database.is_sqlite:
        return LoopWriter(database, ruleset, clock=clock, hold=hold, on_commit=on_commit)
    # PostgreSQL flushes its log at each commit: 2 ms of gathering per transaction
    # keeps commits few when requests are spread over many processes, and a second
    # writer thread writes the next transaction while one waits for its flush (one
    # process measured 1,000-2,700 events/s with one thread, 2,700-3,300 with two).
    return ThreadWriter(
        database,
        ruleset,
        clock=clock,
        hold=hold,
        on_commit=on_commit,
        gather_seconds=0.002,
        threads=2,
    )


def _count_delivery(metrics: Metrics, channel: str, status: DeliveryStatus) -> None:
    metrics.count_delivery(channel, status.value)
