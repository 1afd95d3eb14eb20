"""Rows and steps for the store's tests: events and messages shaped as ingestion builds
them, written each in a unit of work of its own and committed, and read back in a
separate read-only transaction, so that a check sees only what was committed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from herald.domain.model import message_id_for
from herald.domain.timeutil import to_micros
from herald.store.database import Database
from herald.store.outbox import PENDING, AttemptRecord
from herald.store.unit_of_work import ReadOnly, UnitOfWork

DAY = datetime(2025, 11, 3, tzinfo=UTC)
T0 = to_micros(DAY)
HOUR = 3_600_000_000
SECOND = 1_000_000
LEASE = 60 * SECOND
# The users and event ids of a batch of 1,000 events, one of them u_1.
MANY_KEYS = ["u_1"] + [f"u_{n}" for n in range(2, 1001)] + [f"e_{n}" for n in range(1000)]


MIB = 1024 * 1024


def event_row(
    event_id: str,
    *,
    user_id: str = "u_1",
    event_type: str = "payment_failed",
    at_us: int = T0,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``events`` row shaped like ``herald.service.batch_rows._event_row`` builds it."""
    return {
        "event_id": event_id,
        "fingerprint": f"fp-{event_id}",
        "user_id": user_id,
        "event_type": event_type,
        "event_time_us": at_us,
        "received_us": at_us,
        "properties": properties if properties is not None else {"amount": 10.5},
        "user_traits": traits if traits is not None else {"email": "ana@example.com"},
        "decisions": [{"rule": "R", "rule_version": "1", "outcome": "skipped", "reason": "-"}],
        "ruleset_version": "test",
    }


def message_row(
    dedup_key: str,
    *,
    user_id: str = "u_1",
    status: str = PENDING,
    due_us: int = T0,
    channel: str = "email",
) -> dict[str, Any]:
    """A ``messages`` row shaped like ``herald.service.batch_rows._message_row`` builds it."""
    return {
        "message_id": message_id_for(dedup_key),
        "dedup_key": dedup_key,
        "user_id": user_id,
        "event_id": f"evt-{dedup_key}",
        "rule": dedup_key.split(":")[0],
        "rule_version": "1",
        "channel": channel,
        "category": "transactional",
        "recipient": "ana@example.com" if channel == "email" else "+351910000000",
        "subject": "Your payment failed",
        "body": "Hello Ana",
        "html": "<p>Hello Ana</p>",
        "status": status,
        "created_us": T0,
        "due_us": due_us,
        "attempts": 0,
        "hold_reason": None,
    }


def add_events(database: Database, *rows: dict[str, Any]) -> None:
    with UnitOfWork(database) as uow:
        uow.events.add_many(rows)
        uow.commit()


def add_messages(database: Database, *rows: dict[str, Any]) -> int:
    with UnitOfWork(database) as uow:
        inserted = uow.outbox.add_many(rows)
        uow.commit()
    return inserted


def claim(database: Database, worker: str, *, now_us: int = T0, limit: int = 100) -> list[str]:
    """Claim due messages for ``worker`` in a committed unit of work; their ids (in no
    particular order: UPDATE ... RETURNING does not promise one)."""
    with UnitOfWork(database) as uow:
        rows = uow.outbox.claim_due(now_us=now_us, limit=limit, worker=worker, lease_us=LEASE)
        uow.commit()
    return [row.message_id for row in rows]


def record(database: Database, message_id: str, worker: str, outcome: str, **extra: Any) -> bool:
    with UnitOfWork(database) as uow:
        attempt = AttemptRecord(
            message_id,
            attempt=extra.pop("attempt", 1),
            at_us=extra.pop("at_us", T0 + SECOND),
            outcome=outcome,
            detail=extra.pop("detail", "provider said so"),
            **extra,
        )
        recorded = uow.outbox.record_attempts([attempt], worker=worker)
        uow.commit()
    return recorded == {attempt.message_id}


def stored_message(database: Database, message_id: str) -> Any:
    with ReadOnly(database) as read:
        return read.outbox.get(message_id)


def event_ids(events: Iterable[Any]) -> list[str]:
    return [event.event_id for event in events]
