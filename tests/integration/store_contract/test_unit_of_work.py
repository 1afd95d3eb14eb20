"""The store's contract, run on every backend (the ``database`` fixture is parametrized over
SQLite and PostgreSQL): units of work, the locks a batch takes, and stored times."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from herald.domain.model import UserProfile
from herald.domain.timeutil import from_micros, to_micros
from herald.store.database import Database
from herald.store.outbox import (
    PENDING,
)
from herald.store.unit_of_work import MAX_KEY_LOCKS, ReadOnly, UnitOfWork
from tests.support.store_rows import (
    HOUR,
    MANY_KEYS,
    T0,
    add_events,
    event_row,
    message_row,
)


class TestUnitOfWork:
    def test_nothing_is_stored_when_the_unit_of_work_ends_without_commit(
        self, database: Database
    ) -> None:
        with UnitOfWork(database) as uow:
            uow.events.add_many([event_row("e1")])
            uow.users.upsert_many([UserProfile("u_1", {"a": 1}, {"a": T0})], T0)
            uow.outbox.add_many([message_row("m1")])

        with ReadOnly(database) as read:
            assert read.events.fingerprints(["e1"]) == {}
            assert read.users.get_many(["u_1"]) == {}
            assert read.outbox.count_by_status() == {}

    def test_an_error_inside_the_unit_of_work_rolls_everything_back(
        self, database: Database
    ) -> None:
        with pytest.raises(RuntimeError), UnitOfWork(database) as uow:
            uow.events.add_many([event_row("e1")])
            uow.outbox.add_many([message_row("m1")])
            raise RuntimeError("the rule engine failed")

        with ReadOnly(database) as read:
            assert read.events.fingerprints(["e1"]) == {}
            assert read.outbox.count_by_status() == {}

    def test_a_commit_stores_the_event_its_user_and_its_messages_together(
        self, database: Database
    ) -> None:
        with UnitOfWork(database) as uow:
            uow.events.add_many([event_row("e1")])
            uow.users.upsert_many([UserProfile("u_1", {"a": 1}, {"a": T0})], T0)
            uow.outbox.add_many([message_row("m1")])
            uow.commit()

        with ReadOnly(database) as read:
            assert read.events.fingerprints(["e1"]) == {"e1": "fp-e1"}
            assert set(read.users.get_many(["u_1"])) == {"u_1"}
            assert read.outbox.count_by_status() == {PENDING: 1}

    @pytest.mark.parametrize(
        ("first_keys", "second_keys"),
        [
            (["u_1"], ["u_1"]),
            # a batch's transaction, beyond the keys locked one by one, and a single event
            (MANY_KEYS, ["u_1"]),
            (["u_1"], MANY_KEYS),
        ],
        ids=["one-and-one", "many-then-one", "one-then-many"],
    )
    def test_a_second_unit_of_work_on_the_same_user_waits_for_the_first_to_commit(
        self, database: Database, first_keys: list[str], second_keys: list[str]
    ) -> None:
        locked = threading.Event()
        second_saw: list[dict[str, str]] = []

        def second() -> None:
            with UnitOfWork(database) as uow:
                uow.lock(second_keys)
                locked.set()
                second_saw.append(uow.events.fingerprints(["e1"]))

        with UnitOfWork(database) as first:
            first.lock(first_keys)
            thread = threading.Thread(target=second)
            thread.start()
            assert not locked.wait(0.5), "the second unit of work did not wait for the lock"
            first.events.add_many([event_row("e1")])
            first.commit()
        thread.join(timeout=30)

        assert locked.is_set()
        assert second_saw == [{"e1": "fp-e1"}]  # it sees what the first one committed


@pytest.mark.postgres
def test_a_batch_transaction_holds_a_bounded_number_of_locks(postgres_url: str) -> None:
    """PostgreSQL's lock table has max_locks_per_transaction x max_connections slots (6,400
    by default): transactions locking each of 2,000 keys filled it with a few batches at
    once, and every ingestion then failed with "out of shared memory"."""
    database = Database(postgres_url)
    try:
        with UnitOfWork(database) as uow, ReadOnly(database) as read:
            uow.lock(MANY_KEYS)
            held = read.connection.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).scalar_one()
    finally:
        database.dispose()

    assert 1 <= held <= MAX_KEY_LOCKS + 1


def test_stored_times_round_trip_to_the_microsecond(database: Database) -> None:
    moment = datetime(2025, 10, 31, 19, 24, 11, 123456, tzinfo=UTC)
    add_events(database, event_row("e1", at_us=to_micros(moment)))

    with ReadOnly(database) as read:
        [event] = read.events.in_window("u_1", "payment_failed", T0 - 5 * 24 * HOUR, T0)

    assert event.timestamp == moment == from_micros(to_micros(moment))
