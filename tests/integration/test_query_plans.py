"""Cost per event must not grow with history: every statement Herald runs while ingesting,
delivering and reading the audit finds its rows through an index keyed by who or what
they are (user, event id, message id, dedup key, outbox status), never by scanning a
table or a time range of everybody's events. Checked with SQLite's own query planner on
the statements really executed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from herald.delivery.dispatcher import Dispatcher
from herald.delivery.outcomes import DispatchReport
from herald.delivery.provider import Provider
from herald.delivery.providers.stub import LogAlertProvider, StubProvider
from herald.domain.model import Event
from herald.rules.loader import load_ruleset
from herald.service.audit import user_audit
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import UnitOfWork
from tests.conftest import FixedClock

TABLES = ("events", "messages", "users", "delivery_attempts")
KEYS = {"user_id", "event_id", "message_id", "dedup_key", "status", "rowid"}
SEARCH = re.compile(r"SEARCH (\w+) USING .*?\((\w+)")


def problem(detail: str) -> str | None:
    """Why a line of a query plan would make a statement's cost grow with history."""
    words = detail.split()
    if words[0] == "SCAN" and words[1] in TABLES:
        return "scans the table"
    if detail.startswith(("MULTI-INDEX OR", "USE TEMP B-TREE")):
        # Gathers every matching row (e.g. every due message) to sort it or merge it,
        # even when only the first few are wanted.
        return "gathers and sorts all matches"
    search = SEARCH.match(detail)
    if search and search[1] in TABLES and search[2] not in KEYS:
        return f"searches by {search[2]}, not by a key"
    return None


START = datetime.fromisoformat("2025-11-02T10:00:00+00:00")


def user_events(user: str) -> list[Event]:
    traits = {"email": f"{user}@example.com", "phone": "+351900000000", "marketing_opt_in": True}
    failure = {"amount": 10.0, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"}
    return [
        Event(f"{user}-link", user, "link_bank_success", START + timedelta(hours=1)),
        Event(f"{user}-signup", user, "signup_completed", START, user_traits=traits),
        Event(f"{user}-pay", user, "payment_failed", START, properties=failure),
    ]


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[Database, list[str]]]:
    """A database whose connections record every query they run, as SQLite ran it (values
    in place of the placeholders): statements through SQLAlchemy and those the hot path
    gives the driver directly alike."""
    database = Database(f"sqlite:///{tmp_path / 'herald.db'}")
    upgrade(database)
    database.dispose()  # connections opened from now on are traced
    statements: list[str] = []

    def record(sql: str) -> None:
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "UPDATE", "DELETE", "WITH"):
            statements.append(sql)

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(record)

    for engine in {database.writer, database.reader}:
        event.listen(engine, "connect", trace)
    yield database, statements
    database.dispose()


def test_ingest_delivery_and_audit_never_scan_a_table(
    recorded: tuple[Database, list[str]], tmp_path: Path
) -> None:
    database, statements = recorded
    rules, clock = load_ruleset(), FixedClock()
    for batch in ([e for u in ("u1", "u2") for e in user_events(u)], user_events("u3")):
        with UnitOfWork(database) as uow:
            ingest(uow, batch, rules, now=clock())
            uow.commit()
    providers: dict[str, Provider] = {
        "email": StubProvider(tmp_path / "o.jsonl"),
        "sms": StubProvider(tmp_path / "s"),
        "internal": LogAlertProvider(),
    }

    async def one_round() -> DispatchReport:
        try:
            return await Dispatcher(database, providers, worker_id="w", clock=clock).run_once()
        finally:
            for provider in providers.values():
                await provider.aclose()

    report = asyncio.run(one_round())
    assert report.sent == 12  # welcome, nudge, funds email and alert for each of three users
    assert user_audit(database, "u1", limit=2, cursor=None) is not None

    assert len(statements) > 10
    assert any(sql.startswith("SELECT user_id, traits") for sql in statements)  # hot path
    problems = []
    with database.reader.connect() as connection:
        for sql in statements:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            problems += [
                f"{problem(detail)}: {detail}  <-  {' '.join(sql.split())[:120]}"
                for *_ids, detail in plan
                if problem(detail)
            ]
    assert problems == []


def test_the_check_catches_a_history_lookup_by_time_alone() -> None:
    assert problem("SEARCH events USING INDEX ix_events_time (event_time_us>? AND event_time_us<?)")
    assert problem("SCAN events USING INDEX ix_events_time")
    assert problem("SEARCH events USING INDEX ix_events_user_time (user_id=?)") is None


def test_the_check_catches_a_claim_that_sorts_the_whole_backlog() -> None:
    assert problem("MULTI-INDEX OR")
    assert problem("USE TEMP B-TREE FOR ORDER BY")
