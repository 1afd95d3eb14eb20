"""Events to deliver, stored as the service stores them, a dispatcher whose providers are
closed once the test ends, the messages waiting with their due times and reasons, a
database clock that follows the test's, and a provider whose sends wait until the test lets
them go."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest

from herald.delivery.backoff import RetryPolicy
from herald.delivery.dispatcher import Dispatcher
from herald.delivery.provider import DeliveryResult, Provider, SendRequest
from herald.domain.model import Event
from herald.domain.timeutil import from_micros, iso, parse_timestamp, to_micros
from herald.rules.loader import load_ruleset
from herald.service.ingest import ingest
from herald.store.claims import OutboxClaims
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock

RULES = load_ruleset()


def funds_failure(user: str, day: int = 3, **traits: Any) -> Event:
    return Event(
        event_id=f"pf-{user}-{day}",
        user_id=user,
        event_type="payment_failed",
        timestamp=parse_timestamp(f"2025-11-{day:02d}T10:00:00Z"),
        properties={"amount": 12.5, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        user_traits={"email": f"{user}@example.com", **traits},
    )


def link_after_signup(user: str) -> list[Event]:
    traits = {"phone": "+351910000001", "marketing_opt_in": True}
    signup = Event(
        f"s-{user}", user, "signup_completed", parse_timestamp("2025-11-03T09:00:00Z"), {}, traits
    )
    link = Event(
        f"l-{user}", user, "link_bank_success", parse_timestamp("2025-11-03T10:00:00Z"), {}, traits
    )
    return [signup, link]


def store(database: Database, clock: FixedClock, events: list[Event]) -> None:
    with UnitOfWork(database) as uow:
        ingest(uow, events, RULES, now=clock())
        uow.commit()


# The providers a test delivered with, closed once it ends, as a runtime closes its own when
# it stops: a stub's file, an SMTP provider's pooled connections.
_IN_USE: list[Provider] = []


def close_after_test(providers: Iterable[Provider]) -> None:
    _IN_USE.extend(providers)


def dispatcher(
    database: Database, clock: FixedClock, providers: dict[str, Provider], **options: Any
) -> Dispatcher:
    options.setdefault("retry", RetryPolicy(max_attempts=3, base=10, jitter=0))
    close_after_test(providers.values())
    return Dispatcher(
        database, providers, worker_id=options.pop("worker_id", "w1"), clock=clock, **options
    )


def run_rounds(worker: Dispatcher, clock: FixedClock, rounds: int) -> None:
    """``rounds`` rounds, ten minutes apart: past any backoff of the test policy."""
    for _ in range(rounds):
        asyncio.run(worker.run_once())
        clock.now += timedelta(minutes=10)


def pending(database: Database) -> list[tuple[str, str]]:
    """The messages waiting, as ``(due time, hold_reason)``, the earliest due first."""
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT due_us, hold_reason FROM messages WHERE status = 'pending' "
            "ORDER BY due_us, created_us"
        ).all()
    return [(iso(from_micros(due_us)), reason) for due_us, reason in rows]


def database_clock_follows(
    monkeypatch: pytest.MonkeyPatch, clock: FixedClock, ahead: timedelta = timedelta()
) -> None:
    """The database's clock, which dispatchers timing claims by it (``database_time``) read,
    made the test's ``clock`` moved by ``ahead`` (behind when negative): a test that moves
    its clock by hours moves the database's with it, as time would move both."""
    monkeypatch.setattr(
        OutboxClaims, "database_time_us", lambda _claims: to_micros(clock.now + ahead)
    )


def message(database: Database) -> Any:
    """The outbox row of the first message stored (the only one, in most tests)."""
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql("SELECT message_id FROM messages").all()
        return read.outbox.get(rows[0][0])


class GatedProvider:
    """A remote provider whose sends wait until the test opens the gate."""

    name = "gated"
    local = False

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = asyncio.Event()

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.started.append(request.message_id)
        await self.gate.wait()
        return DeliveryResult.sent("through the gate")

    async def aclose(self) -> None:
        pass
