"""Histories for the retention tests: events from before and after the cutoff, ingested
and delivered as the service does, and the reads that show what a prune left."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from herald.domain.model import Event
from herald.domain.timeutil import to_micros
from herald.rules.definition import RuleSet
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.outbox import AttemptRecord
from herald.store.tables import delivery_attempts, events, messages, users
from herald.store.unit_of_work import UnitOfWork

OLD = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)


CUTOFF = datetime(2024, 6, 1, tzinfo=UTC)


RECENT = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)


FAR_FUTURE = RECENT + timedelta(days=3650)


def payment_initiated(user: str, at: datetime, n: int) -> Event:
    """An event no rule reacts to: it leaves no message behind."""
    return Event(
        event_id=f"evt_{user}_pay_{n}",
        user_id=user,
        event_type="payment_initiated",
        timestamp=at,
        properties={"amount": 10.0 + n},
    )


def signup(user: str, at: datetime) -> Event:
    """An event that creates one welcome email for ``user``."""
    return Event(
        event_id=f"evt_{user}_signup",
        user_id=user,
        event_type="signup_completed",
        timestamp=at,
        user_traits={"email": f"{user}@example.com", "marketing_opt_in": True},
    )


def insufficient_funds(event_id: str, user: str, at: datetime) -> Event:
    """An event that asks for the user's insufficient-funds email of its UTC day."""
    return Event(
        event_id,
        user,
        "payment_failed",
        at,
        {"amount": 5.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"email": f"{user}@example.com"},
    )


def store(database: Database, ruleset: RuleSet, batch: list[Event], *, now: datetime) -> None:
    """Ingest and commit, with ``now`` as the moment the messages were created."""
    with UnitOfWork(database) as uow:
        ingest(uow, batch, ruleset, now=now)
        uow.commit()


def deliver(database: Database, *, at: datetime, outcome_by_user: dict[str, str]) -> None:
    """Claim every due message and record one attempt with the user's outcome
    (``sent``, ``failed`` or ``retry``; a retry is due again only in the far future)."""
    at_us = to_micros(at)
    with UnitOfWork(database) as uow:
        claimed = uow.outbox.claim_due(now_us=at_us, limit=100, worker="test", lease_us=60_000_000)
        assert {row.user_id for row in claimed} == set(outcome_by_user)
        for row in claimed:
            outcome = outcome_by_user[row.user_id]
            attempt = AttemptRecord(
                row.message_id,
                attempt=1,
                at_us=at_us,
                outcome=outcome,
                detail=f"test: {outcome}",
                next_due_us=to_micros(FAR_FUTURE),
            )
            assert uow.outbox.record_attempts([attempt], worker="test") == {attempt.message_id}
        uow.commit()


def event_ids(database: Database) -> set[str]:
    with database.reader.connect() as connection:
        return set(connection.execute(select(events.c.event_id)).scalars())


def message_status_by_user(database: Database) -> dict[str, str]:
    with database.reader.connect() as connection:
        rows = connection.execute(select(messages.c.user_id, messages.c.status))
        return {row.user_id: row.status for row in rows}


def users_with_attempts(database: Database) -> set[str]:
    with database.reader.connect() as connection:
        rows = connection.execute(
            select(messages.c.user_id).join(
                delivery_attempts, delivery_attempts.c.message_id == messages.c.message_id
            )
        )
        return set(rows.scalars())


def orphan_attempts(database: Database) -> int:
    """Delivery attempts whose message is gone."""
    with database.reader.connect() as connection:
        known = select(messages.c.message_id)
        rows = connection.execute(
            select(delivery_attempts.c.message_id).where(
                delivery_attempts.c.message_id.not_in(known)
            )
        )
        return len(rows.all())


def pruned_before(database: Database, user_ids: Iterable[str]) -> dict[str, int | None]:
    with database.reader.connect() as connection:
        rows = connection.execute(
            select(users.c.user_id, users.c.pruned_before_us).where(users.c.user_id.in_(user_ids))
        )
        return {row.user_id: row.pruned_before_us for row in rows}


def pruning_in_small_batches(url: str) -> subprocess.Popen[str]:
    """`herald prune --older-than 400d` of the database at ``url``, five rows a
    transaction, in a process of its own whose output (stderr too) is read as it goes."""
    from tests.support.processes import herald_command, herald_environment

    arguments = ["prune", "--older-than", "400d", "--batch-size", "5", "--database", url]
    return subprocess.Popen(
        [*herald_command(), *arguments],
        env=herald_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
