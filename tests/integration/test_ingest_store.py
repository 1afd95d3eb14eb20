"""ingest() on a real database, SQLite and PostgreSQL: one transaction per unit of work,
idempotent on the event id, traits merged by event time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from herald.domain.model import Event
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestResult, IngestStatus, ingest
from herald.store.database import Database
from herald.store.tables import events, messages, users
from herald.store.unit_of_work import UnitOfWork
from tests.conftest import FixedClock

TRAITS = {"email": "maria@example.com", "first_name": "Maria", "marketing_opt_in": True}


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()


def signup(event_id: str = "evt_signup", **traits: Any) -> Event:
    return Event(
        event_id=event_id,
        user_id="u_1",
        event_type="signup_completed",
        timestamp=datetime.fromisoformat("2025-11-02T10:00:00+00:00"),
        user_traits={**TRAITS, **traits},
    )


def payment_failed(event_id: str, reason: str) -> Event:
    return Event(
        event_id=event_id,
        user_id="u_1",
        event_type="payment_failed",
        timestamp=datetime.fromisoformat("2025-11-02T11:00:00+00:00"),
        properties={"amount": 12.5, "attempt_number": 1, "failure_reason": reason},
        user_traits=TRAITS,
    )


def ingest_and_commit(
    database: Database, batch: Sequence[Event], ruleset: RuleSet, clock: FixedClock
) -> list[IngestResult]:
    with UnitOfWork(database) as uow:
        results = ingest(uow, batch, ruleset, now=clock())
        uow.commit()
    return results


def count(database: Database, table: Table) -> int:
    with database.reader.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def stored_messages(database: Database) -> list[Any]:
    with database.reader.connect() as connection:
        return list(connection.execute(select(messages).order_by(messages.c.dedup_key)))


def stored_event(database: Database, event_id: str) -> Any:
    with database.reader.connect() as connection:
        return connection.execute(select(events).where(events.c.event_id == event_id)).one()


def test_an_ingested_event_is_stored_with_its_decisions_and_its_message(
    database: Database, ruleset: RuleSet, clock: FixedClock
) -> None:
    [result] = ingest_and_commit(database, [signup()], ruleset, clock)

    assert result.status is IngestStatus.ACCEPTED
    row = stored_event(database, "evt_signup")
    assert row.decisions == [decision.as_json() for decision in result.decisions]
    assert row.ruleset_version == ruleset.version
    [welcome] = [d for d in row.decisions if d["rule"] == "WELCOME_EMAIL"]
    assert welcome["outcome"] == "triggered"
    [message] = stored_messages(database)
    assert message.message_id == welcome["message_id"]
    assert (message.rule, message.dedup_key) == ("WELCOME_EMAIL", "WELCOME_EMAIL:u_1")
    assert (message.recipient, message.status) == ("maria@example.com", "pending")
    assert message.subject == "Welcome aboard, Maria!"
    assert message.event_id == "evt_signup"


def test_a_unit_of_work_left_without_commit_stores_nothing(
    database: Database, ruleset: RuleSet, clock: FixedClock
) -> None:
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [signup()], ruleset, now=clock())
        assert result.status is IngestStatus.ACCEPTED

    assert count(database, events) == 0
    assert count(database, messages) == 0
    assert count(database, users) == 0


def test_a_failure_inside_the_unit_of_work_rolls_everything_back(
    database: Database, ruleset: RuleSet, clock: FixedClock
) -> None:
    with pytest.raises(RuntimeError, match="request aborted"), UnitOfWork(database) as uow:
        ingest(uow, [signup()], ruleset, now=clock())
        raise RuntimeError("request aborted")

    assert count(database, events) == 0
    assert count(database, messages) == 0


def test_an_event_sent_again_with_the_same_payload_is_a_duplicate_and_creates_nothing(
    database: Database, ruleset: RuleSet, clock: FixedClock
) -> None:
    ingest_and_commit(database, [signup()], ruleset, clock)
    before = stored_messages(database)

    [again] = ingest_and_commit(database, [signup()], ruleset, clock)

    assert again.status is IngestStatus.DUPLICATE
    assert again.decisions == []
    assert count(database, events) == 1
    assert stored_messages(database) == before


def test_an_event_repeated_within_one_batch_is_a_duplicate(
    database: Database, ruleset: RuleSet, clock: FixedClock
) -> None:
    results = ingest_and_commit(database, [signup(), signup()], ruleset, clock)

    assert [r.status for r in results] == [IngestStatus.ACCEPTED, IngestStatus.DUPLICATE]
    assert count(database, events) == 1
    assert count(database, messages) == 1


def test_an_event_id_reused_for_a_different_payload_is_a_conflict_and_creates_nothing(
    database: Database, ruleset: RuleSet, clock: FixedClock
) -> None:
    ingest_and_commit(database, [payment_failed("evt_pay", "CARD_EXPIRED")], ruleset, clock)

    # Accepted, this payload would send the insufficient-funds email.
    [reused] = ingest_and_commit(
        database, [payment_failed("evt_pay", "INSUFFICIENT_FUNDS")], ruleset, clock
    )

    assert reused.status is IngestStatus.CONFLICT
    assert reused.decisions == []
    assert count(database, events) == 1
    assert count(database, messages) == 0
    assert stored_event(database, "evt_pay").properties["failure_reason"] == "CARD_EXPIRED"


EARLIER = Event(
    event_id="evt_early",
    user_id="u_1",
    event_type="payment_initiated",
    timestamp=datetime.fromisoformat("2025-11-02T08:00:00+00:00"),
    properties={"amount": 5},
    user_traits={"first_name": "Mary", "country": "PT", "email": "old@example.com"},
)
LATER = Event(
    event_id="evt_late",
    user_id="u_1",
    event_type="payment_initiated",
    timestamp=datetime.fromisoformat("2025-11-02T09:00:00+00:00"),
    properties={"amount": 6},
    user_traits={"first_name": "Maria", "email": "maria@example.com"},
)


@pytest.mark.parametrize("in_one_batch", [False, True], ids=["separate_requests", "one_batch"])
@pytest.mark.parametrize(
    "arrivals", [[EARLIER, LATER], [LATER, EARLIER]], ids=["in_time_order", "later_first"]
)
def test_traits_from_the_later_event_win_whatever_the_arrival_order(
    arrivals: list[Event],
    in_one_batch: bool,
    database: Database,
    ruleset: RuleSet,
    clock: FixedClock,
) -> None:
    batches = [arrivals] if in_one_batch else [[arriving] for arriving in arrivals]
    for batch in batches:
        ingest_and_commit(database, batch, ruleset, clock)

    with UnitOfWork(database) as uow:
        profile = uow.users.get_many(["u_1"])["u_1"]

    assert profile.traits == {
        "first_name": "Maria",
        "email": "maria@example.com",
        "country": "PT",
    }


def test_a_message_says_what_its_rule_saw_however_the_events_were_batched(
    database: Database, ruleset: RuleSet, clock: FixedClock
) -> None:
    """The first email is decided before the user's name is known; a later event in the
    same batch that brings the name must not change what the first email says."""

    def insufficient_funds(user: str, day: int, traits: dict[str, Any]) -> Event:
        return Event(
            event_id=f"evt_{user}_{day}",
            user_id=user,
            event_type="payment_failed",
            timestamp=datetime.fromisoformat(f"2025-11-0{day}T11:00:00+00:00"),
            properties={
                "amount": 12.5,
                "attempt_number": 1,
                "failure_reason": "INSUFFICIENT_FUNDS",
            },
            user_traits={"email": f"{user}@example.com", **traits},
        )

    def first_email_greeting(user: str) -> str:
        with database.reader.connect() as connection:
            body = connection.execute(
                select(messages.c.body).where(messages.c.event_id == f"evt_{user}_2")
            ).scalar_one()
        return body.splitlines()[0]

    named = {"first_name": "Maria"}
    together = [insufficient_funds("u_batch", 2, {}), insufficient_funds("u_batch", 3, named)]
    ingest_and_commit(database, together, ruleset, clock)
    for event in (insufficient_funds("u_apart", 2, {}), insufficient_funds("u_apart", 3, named)):
        ingest_and_commit(database, [event], ruleset, clock)

    assert first_email_greeting("u_apart") == "Hi there,"
    assert first_email_greeting("u_batch") == "Hi there,"
