"""The store's contract, one suite run on every backend (the ``database`` fixture is
parametrized over SQLite and PostgreSQL): whatever passes here holds on both.

Writes go through a ``UnitOfWork`` and are committed explicitly, the way the service
uses the store; reads that check the outcome use a separate ``ReadOnly`` transaction,
so they see only what was committed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from herald.domain.model import UserProfile, message_id_for
from herald.domain.timeutil import from_micros, to_micros
from herald.store import events as events_store
from herald.store import outbox as outbox_store
from herald.store import tables
from herald.store.database import Database
from herald.store.events import EventRow
from herald.store.outbox import (
    CANCELLED,
    FAILED,
    PENDING,
    REDACTED,
    SENDING,
    SENT,
    AttemptRecord,
    MessageRow,
)
from herald.store.unit_of_work import MAX_KEY_LOCKS, ReadOnly, UnitOfWork

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


def test_the_row_types_name_exactly_the_columns_their_repositories_insert() -> None:
    """Ingestion builds rows as ``EventRow`` and ``MessageRow``; the repositories insert the
    columns they list. A column added to one and not the others would be lost or fail."""
    assert set(EventRow.__annotations__) == set(events_store._COLUMNS)
    assert set(events_store._COLUMNS) == {c.name for c in tables.events.c} - {"seq"}
    assert set(MessageRow.__annotations__) == set(outbox_store._MESSAGE_COLUMNS)
    delivery_state = {"sent_us", "last_error", "claimed_by", "lease_until_us", "cancel_requested"}
    assert (
        set(outbox_store._MESSAGE_COLUMNS) == {c.name for c in tables.messages.c} - delivery_state
    )
    # A claim returns every column, by name.
    assert set(outbox_store.ClaimedMessage._fields) == {c.name for c in tables.messages.c}


class TestEventRepository:
    def test_fingerprints_name_only_the_events_already_stored(self, database: Database) -> None:
        add_events(database, event_row("e1"), event_row("e2"))

        with ReadOnly(database) as read:
            found = read.events.fingerprints(["e1", "e3", "e2", "e1"])

        assert found == {"e1": "fp-e1", "e2": "fp-e2"}

    def test_fingerprints_answer_for_more_ids_than_one_query_can_bind(
        self, database: Database
    ) -> None:
        add_events(database, *(event_row(f"e{i}", at_us=T0 + i) for i in range(1200)))

        with ReadOnly(database) as read:
            found = read.events.fingerprints([f"e{i}" for i in range(0, 2400, 2)])

        assert len(found) == 600
        assert found["e1198"] == "fp-e1198"

    def test_decisions_of_give_back_what_was_stored_for_stored_events_only(
        self, database: Database
    ) -> None:
        add_events(database, event_row("e1"))

        with ReadOnly(database) as read:
            found = read.events.decisions_of(["e1", "e2"])

        assert found == {"e1": event_row("e1")["decisions"]}

    def test_the_database_refuses_a_second_event_with_the_same_id(self, database: Database) -> None:
        add_events(database, event_row("e1"))

        with pytest.raises(IntegrityError):
            add_events(database, event_row("e1", at_us=T0 + HOUR))

    def test_in_window_includes_events_exactly_on_both_bounds(self, database: Database) -> None:
        add_events(
            database,
            event_row("before", at_us=T0 - 1),
            event_row("at-start", at_us=T0),
            event_row("inside", at_us=T0 + HOUR),
            event_row("at-end", at_us=T0 + 2 * HOUR),
            event_row("after", at_us=T0 + 2 * HOUR + 1),
        )

        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0, T0 + 2 * HOUR)

        assert sorted(event_ids(found)) == ["at-end", "at-start", "inside"]

    def test_in_window_gives_only_as_many_of_the_earliest_or_latest_as_asked(
        self, database: Database
    ) -> None:
        add_events(database, *(event_row(f"e{n}", at_us=T0 + (5 - n) * HOUR) for n in range(5)))

        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0, T0 + 9 * HOUR, earliest=2)

        assert event_ids(found) == ["e4", "e3"]
        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0, T0 + 9 * HOUR, latest=2)
        assert event_ids(found) == ["e0", "e1"]

    def test_in_window_sees_only_that_users_events_of_that_type(self, database: Database) -> None:
        add_events(
            database,
            event_row("mine", user_id="u_1", event_type="payment_failed"),
            event_row("other-type", user_id="u_1", event_type="signup_completed"),
            event_row("other-user", user_id="u_2", event_type="payment_failed"),
        )

        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0 - HOUR, T0 + HOUR)

        assert event_ids(found) == ["mine"]

    def test_in_window_returns_events_as_they_were_stored(self, database: Database) -> None:
        properties = {"amount": 12.5, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"}
        traits = {"email": "ana@example.com", "marketing_opt_in": True, "name": "Ana Sá"}
        add_events(database, event_row("e1", at_us=T0 + 7, properties=properties, traits=traits))

        with ReadOnly(database) as read:
            [event] = read.events.in_window("u_1", "payment_failed", T0, T0 + HOUR)

        assert event.user_id == "u_1"
        assert event.event_type == "payment_failed"
        assert event.timestamp == DAY + timedelta(microseconds=7)
        assert event.timestamp.tzinfo is not None
        assert dict(event.properties) == properties
        assert dict(event.user_traits) == traits

    def test_page_for_user_lists_newest_first_then_continues_after_the_cursor(
        self, database: Database
    ) -> None:
        # Two events share a time: the one that arrived later (higher seq) comes first.
        add_events(
            database,
            event_row("oldest", at_us=T0),
            event_row("tie-first-arrival", at_us=T0 + HOUR),
            event_row("tie-second-arrival", at_us=T0 + HOUR),
            event_row("newest", at_us=T0 + 2 * HOUR),
            event_row("someone-else", user_id="u_2", at_us=T0 + 3 * HOUR),
        )

        with ReadOnly(database) as read:
            first, more = read.events.page_for_user("u_1", limit=2, before=None, max_bytes=MIB)
            assert more
            cursor = (first[-1].event_time_us, first[-1].seq)
            second, more = read.events.page_for_user("u_1", limit=2, before=cursor, max_bytes=MIB)
            assert not more
            cursor = (second[-1].event_time_us, second[-1].seq)
            third, more = read.events.page_for_user("u_1", limit=2, before=cursor, max_bytes=MIB)

        assert event_ids(first) == ["newest", "tie-second-arrival"]
        assert event_ids(second) == ["tie-first-arrival", "oldest"]
        assert third == [] and not more

    def test_a_page_stops_once_its_events_hold_max_bytes_but_never_before_its_first(
        self, database: Database
    ) -> None:
        big = {"note": "x" * 5000}
        add_events(
            database,
            *(event_row(f"e{n}", at_us=T0 + n * HOUR, properties=big) for n in range(4)),
        )

        with ReadOnly(database) as read:
            two, more = read.events.page_for_user("u_1", limit=10, before=None, max_bytes=12_000)
            one, _ = read.events.page_for_user("u_1", limit=10, before=None, max_bytes=100)
            every, done = read.events.page_for_user("u_1", limit=10, before=None, max_bytes=MIB)

        assert event_ids(two) == ["e3", "e2"] and more
        assert event_ids(one) == ["e3"]
        assert event_ids(every) == ["e3", "e2", "e1", "e0"] and not done


class TestUserRepository:
    def test_get_many_returns_only_the_users_it_knows(self, database: Database) -> None:
        with UnitOfWork(database) as uow:
            uow.users.upsert_many(
                [UserProfile("u_1", {"email": "ana@example.com"}, {"email": T0})], T0
            )
            uow.commit()

        with ReadOnly(database) as read:
            found = read.users.get_many(["u_1", "u_unknown", "u_1"])

        assert found == {"u_1": UserProfile("u_1", {"email": "ana@example.com"}, {"email": T0})}

    def test_get_many_answers_for_more_users_than_one_query_can_bind(
        self, database: Database
    ) -> None:
        profiles = [UserProfile(f"u_{i}", {"n": i}, {"n": T0}) for i in range(1100)]
        with UnitOfWork(database) as uow:
            uow.users.upsert_many(profiles, T0)
            uow.commit()

        with ReadOnly(database) as read:
            found = read.users.get_many(f"u_{i}" for i in range(0, 2200, 2))

        assert len(found) == 550
        assert found["u_1098"].traits == {"n": 1098}

    def test_an_upsert_of_a_merged_profile_updates_the_user_and_keeps_first_seen(
        self, database: Database
    ) -> None:
        with UnitOfWork(database) as uow:
            uow.users.upsert_many(
                [
                    UserProfile("u_1", {"email": "old@example.com"}, {"email": T0}),
                    UserProfile("u_2", {"email": "bo@example.com"}, {"email": T0}),
                ],
                T0,
            )
            uow.commit()

        with UnitOfWork(database) as uow:
            known = uow.users.get_many(["u_1"])["u_1"]
            merged = known.merged({"email": "new@example.com", "phone": "+351910"}, T0 + HOUR)
            uow.users.upsert_many([merged], T0 + 2 * HOUR)
            uow.commit()

        with ReadOnly(database) as read:
            profiles = read.users.get_many(["u_1", "u_2"])
            row = read.users.get_row("u_1")
        assert profiles["u_1"].traits == {"email": "new@example.com", "phone": "+351910"}
        assert profiles["u_1"].trait_times == {"email": T0 + HOUR, "phone": T0 + HOUR}
        assert profiles["u_2"].traits == {"email": "bo@example.com"}
        assert (row.first_seen_us, row.updated_us) == (T0, T0 + 2 * HOUR)

    def test_an_upsert_keeps_preferences_and_unsubscribes_reach_the_rules_beside_the_traits(
        self, database: Database
    ) -> None:
        with UnitOfWork(database) as uow:
            uow.users.set_preferences("u_1", {"unsubscribed": ["sms", "email"]}, T0)
            uow.commit()
        with UnitOfWork(database) as uow:
            profile = uow.users.get_many(["u_1"])["u_1"].merged({"email": "a@b.c"}, T0)
            uow.users.upsert_many([profile], T0 + HOUR)
            uow.commit()

        with ReadOnly(database) as read:
            profile = read.users.get_many(["u_1"])["u_1"]
            row = read.users.get_row("u_1")
        assert profile.traits == {"email": "a@b.c"}
        assert profile.unsubscribed == {"email", "sms"}
        assert row.traits == {"email": "a@b.c"}
        assert row.preferences == {"unsubscribed": ["sms", "email"]}


class TestOutboxRepository:
    def test_holders_map_each_taken_dedup_key_to_its_message(self, database: Database) -> None:
        add_messages(database, message_row("WELCOME_EMAIL:u_1"), message_row("WELCOME_EMAIL:u_2"))

        with ReadOnly(database) as read:
            held = read.outbox.holders(["WELCOME_EMAIL:u_1", "WELCOME_EMAIL:u_9"])

        assert held == {"WELCOME_EMAIL:u_1": message_id_for("WELCOME_EMAIL:u_1")}

    def test_add_many_skips_a_taken_dedup_key_and_counts_only_the_inserted_rows(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("WELCOME_EMAIL:u_1"))
        taken = message_row("WELCOME_EMAIL:u_1") | {"event_id": "a-later-event"}

        inserted = add_messages(database, taken, message_row("WELCOME_EMAIL:u_3"))

        assert inserted == 1
        assert stored_message(database, message_id_for("WELCOME_EMAIL:u_3")) is not None
        holder = stored_message(database, message_id_for("WELCOME_EMAIL:u_1"))
        assert holder.event_id == "evt-WELCOME_EMAIL:u_1"

    def test_add_many_refuses_a_message_not_named_after_its_dedup_key(
        self, database: Database
    ) -> None:
        # The primary key holds limits only because ids are digests of dedup keys.
        add_messages(database, message_row("WELCOME_EMAIL:u_1"))
        stray = message_row("WELCOME_EMAIL:u_2") | {"dedup_key": "WELCOME_EMAIL:u_1"}

        with pytest.raises(ValueError, match="not named after its dedup key"):
            add_messages(database, message_row("WELCOME_EMAIL:u_3"), stray)

        assert stored_message(database, message_id_for("WELCOME_EMAIL:u_3")) is None

    def test_add_many_of_nothing_inserts_nothing(self, database: Database) -> None:
        assert add_messages(database) == 0

    def test_claim_due_claims_only_pending_messages_whose_time_has_come(
        self, database: Database
    ) -> None:
        add_messages(
            database,
            message_row("due-earlier", due_us=T0 - HOUR),
            message_row("due-now", due_us=T0),
            message_row("held-for-quiet-hours", due_us=T0 + 1),
            message_row("already-sent", status=SENT, due_us=T0 - HOUR),
            message_row("dead-letter", status=FAILED, due_us=T0 - HOUR),
        )

        claimed = claim(database, "worker-a", now_us=T0)

        assert set(claimed) == {message_id_for("due-earlier"), message_id_for("due-now")}
        row = stored_message(database, message_id_for("due-now"))
        assert (row.status, row.claimed_by, row.lease_until_us) == (
            SENDING,
            "worker-a",
            T0 + LEASE,
        )

    def test_claim_due_takes_at_most_the_limit_oldest_first(self, database: Database) -> None:
        add_messages(database, *(message_row(f"m{i}", due_us=T0 - i) for i in range(5)))

        claimed = claim(database, "worker-a", limit=2)

        assert set(claimed) == {message_id_for("m4"), message_id_for("m3")}

    def test_claimed_messages_come_in_turn_earliest_due_first(self, database: Database) -> None:
        # A dispatcher sends (and hands out rate-limited turns) in the order it is given.
        dues = [T0 - (i * 7919) % 40 for i in range(40)]
        add_messages(database, *(message_row(f"m{i}", due_us=due) for i, due in enumerate(dues)))

        with UnitOfWork(database) as uow:
            rows = uow.outbox.claim_due(now_us=T0, limit=40, worker="worker-a", lease_us=LEASE)
            uow.commit()

        assert [row.due_us for row in rows] == sorted(dues)

    def test_a_claimed_message_is_not_claimed_by_a_second_worker(self, database: Database) -> None:
        add_messages(database, message_row("m1"), message_row("m2"))

        assert len(claim(database, "worker-a")) == 2
        assert claim(database, "worker-b", now_us=T0 + LEASE) == []

    def test_concurrent_workers_never_claim_the_same_message(self, database: Database) -> None:
        add_messages(database, *(message_row(f"m{i}", due_us=T0 - i) for i in range(120)))
        claims: dict[str, list[str]] = {f"worker-{n}": [] for n in range(4)}
        start = threading.Barrier(len(claims))

        def drain(worker: str) -> None:
            start.wait()
            while batch := claim(database, worker, limit=7):
                claims[worker] += batch

        threads = [threading.Thread(target=drain, args=(worker,)) for worker in claims]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        every_claim = Counter(mid for batch in claims.values() for mid in batch)
        assert len(every_claim) == 120
        assert set(every_claim.values()) == {1}

    def test_a_lease_that_ran_out_makes_the_message_claimable_again(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("m1"))
        [message_id] = claim(database, "worker-a", now_us=T0)

        assert claim(database, "worker-b", now_us=T0 + LEASE) == []  # the lease ends then
        assert claim(database, "worker-b", now_us=T0 + LEASE + 1) == [message_id]
        row = stored_message(database, message_id)
        assert (row.claimed_by, row.lease_until_us) == ("worker-b", T0 + 2 * LEASE + 1)

    def test_one_claim_takes_expired_leases_first_then_the_oldest_pending_up_to_the_limit(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("abandoned", due_us=T0))
        [abandoned] = claim(database, "worker-a", now_us=T0)
        add_messages(database, *(message_row(f"m{i}", due_us=T0 - i) for i in range(3)))

        claimed = claim(database, "worker-b", now_us=T0 + LEASE + 1, limit=2)

        assert set(claimed) == {abandoned, message_id_for("m2")}
        assert set(claim(database, "worker-b", now_us=T0 + LEASE + 1, limit=5)) == {
            message_id_for("m1"),
            message_id_for("m0"),
        }

    def test_a_worker_that_lost_its_claim_cannot_record_an_attempt(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("m1"))
        [message_id] = claim(database, "worker-a", now_us=T0)
        claim(database, "worker-b", now_us=T0 + LEASE + 1)

        assert record(database, message_id, "worker-a", SENT) is False
        assert record(database, message_id, "worker-b", SENT) is True

        with ReadOnly(database) as read:
            attempts = read.outbox.attempts_for([message_id])[message_id]
        assert [(a.worker, a.outcome) for a in attempts] == [("worker-b", SENT)]

    def test_a_round_records_each_of_its_outcomes_and_only_for_claims_still_held(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("lost", due_us=T0 - 1))
        [lost] = claim(database, "worker-a", now_us=T0, limit=1)
        add_messages(database, *(message_row(f"m{n}") for n in range(4)))
        later = T0 + LEASE + 1
        assert claim(database, "worker-b", now_us=later, limit=1) == [lost]  # lease ran out
        ids = [*sorted(claim(database, "worker-a", now_us=later)), lost]
        claim_again = {lost: "worker-b"}
        at = T0 + SECOND
        outcomes = [
            AttemptRecord(ids[0], 1, at, SENT, "ok"),
            AttemptRecord(ids[1], 1, at, SENT, "ok"),
            AttemptRecord(ids[2], 1, at, "retry", "503", next_due_us=T0 + HOUR),
            AttemptRecord(ids[3], 1, at, FAILED, "550 no such user"),
            AttemptRecord(lost, 1, at, SENT, "ok"),
        ]

        with UnitOfWork(database) as uow:
            recorded = uow.outbox.record_attempts(outcomes, worker="worker-a")
            uow.commit()

        assert recorded == set(ids[:4])  # not the one whose claim was lost
        rows = {m: stored_message(database, m) for m in ids}
        assert [(rows[m].status, rows[m].attempts, rows[m].claimed_by) for m in ids] == [
            (SENT, 1, None),
            (SENT, 1, None),
            (PENDING, 1, None),
            (FAILED, 1, None),
            (SENDING, 0, claim_again[lost]),
        ]
        assert (rows[ids[0]].sent_us, rows[ids[2]].due_us, rows[ids[3]].last_error) == (
            at,
            T0 + HOUR,
            "550 no such user",
        )
        with ReadOnly(database) as read:
            attempts = read.outbox.attempts_for(ids)
        assert {m: [a.outcome for a in attempts.get(m, [])] for m in ids} == {
            ids[0]: [SENT],
            ids[1]: [SENT],
            ids[2]: ["retry"],
            ids[3]: [FAILED],
            lost: [],
        }

    def test_a_sent_message_records_its_attempt_and_is_never_claimed_again(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("m1"))
        [message_id] = claim(database, "worker-a")

        assert record(database, message_id, "worker-a", SENT, at_us=T0 + 5, detail="ok")

        row = stored_message(database, message_id)
        assert (row.status, row.sent_us, row.attempts, row.claimed_by, row.last_error) == (
            SENT,
            T0 + 5,
            1,
            None,
            None,
        )
        assert claim(database, "worker-b", now_us=T0 + 10 * LEASE) == []

    def test_a_retry_puts_the_message_back_in_the_queue_due_at_the_next_time(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("m1"))
        [message_id] = claim(database, "worker-a")

        record(database, message_id, "worker-a", "retry", detail="503", next_due_us=T0 + HOUR)

        row = stored_message(database, message_id)
        assert (row.status, row.due_us, row.attempts, row.last_error) == (
            PENDING,
            T0 + HOUR,
            1,
            "503",
        )
        assert claim(database, "worker-b", now_us=T0 + HOUR - 1) == []
        assert claim(database, "worker-b", now_us=T0 + HOUR) == [message_id]

    def test_requeue_puts_dead_letters_back_due_now_and_leaves_the_rest(
        self, database: Database
    ) -> None:
        add_messages(
            database,
            message_row("dead-1", status=FAILED),
            message_row("dead-2", status=FAILED),
            message_row("dead-3", status=FAILED),
            message_row("sent", status=SENT),
            message_row("pending", due_us=T0 + HOUR),
        )

        with UnitOfWork(database) as uow:
            one = uow.outbox.requeue(now_us=T0 + 5, message_id=message_id_for("dead-1"))
            not_a_dead_letter = uow.outbox.requeue(now_us=T0 + 5, message_id=message_id_for("sent"))
            uow.commit()
        with UnitOfWork(database) as uow:
            rest = uow.outbox.requeue(now_us=T0 + 6)
            uow.commit()

        assert (one, not_a_dead_letter, rest) == (1, 0, 2)
        with ReadOnly(database) as read:
            assert read.outbox.count_by_status() == {PENDING: 4, SENT: 1}
            assert read.outbox.get(message_id_for("dead-1")).due_us == T0 + 5
            assert read.outbox.get(message_id_for("pending")).due_us == T0 + HOUR

    def test_requeue_leaves_a_dead_letter_a_prune_redacted(self, database: Database) -> None:
        # Requeued, the shell (no recipient, "(pruned)" for text) was sent as it was.
        add_messages(database, {**message_row("shell", status=FAILED), "body": REDACTED})

        with UnitOfWork(database) as uow:
            by_id = uow.outbox.requeue(now_us=T0, message_id=message_id_for("shell"))
            every = uow.outbox.requeue(now_us=T0)
            uow.commit()

        assert (by_id, every) == (0, 0)
        assert stored_message(database, message_id_for("shell")).status == FAILED

    def test_cancelling_marketing_takes_only_the_user_s_waiting_marketing_on_those_channels(
        self, database: Database
    ) -> None:
        def marketing(key: str, **options: Any) -> dict[str, Any]:
            return {**message_row(key, **options), "category": "marketing"}

        add_messages(
            database,
            marketing("email-waiting"),
            marketing("sms-waiting", channel="sms"),
            marketing("email-sent", status=SENT),
            marketing("email-other-user", user_id="u_2"),
            message_row("email-transactional"),
        )

        with UnitOfWork(database) as uow:
            cancelled = uow.outbox.cancel_marketing("u_1", ["email"], reason="asked", now_us=T0)
            uow.commit()

        assert cancelled == [message_id_for("email-waiting")]
        with ReadOnly(database) as read:
            assert read.outbox.count_by_status() == {CANCELLED: 1, PENDING: 3, SENT: 1}
        assert stored_message(database, cancelled[0]).last_error == "asked"

    def test_backlog_counts_undelivered_messages_and_the_age_of_the_oldest_due(
        self, database: Database
    ) -> None:
        add_messages(
            database,
            message_row("due-an-hour-ago", due_us=T0 - HOUR),
            message_row("due-later", due_us=T0 + HOUR),
            message_row("sent", status=SENT, due_us=T0 - 5 * HOUR),
            message_row("dead", status=FAILED, due_us=T0 - 5 * HOUR),
        )
        with ReadOnly(database) as read:
            before_claim = read.outbox.backlog(T0)
        claim(database, "worker-a", now_us=T0)

        with ReadOnly(database) as read:
            after_claim = read.outbox.backlog(T0)
            before_anything_is_due = read.outbox.backlog(T0 - 2 * HOUR)

        assert before_claim == (2, HOUR)
        assert after_claim == (2, HOUR)  # a message being sent is still owed
        assert before_anything_is_due == (2, 0)

    def test_an_empty_outbox_has_no_backlog(self, database: Database) -> None:
        with ReadOnly(database) as read:
            assert read.outbox.backlog(T0) == (0, 0)

    def test_release_gives_a_claimed_message_back_without_an_attempt(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("m1"))
        [message_id] = claim(database, "worker-a")

        with UnitOfWork(database) as uow:
            uow.outbox.release(message_id, worker="worker-a", due_us=T0 + 9, reason="rate limit")
            uow.commit()

        row = stored_message(database, message_id)
        assert (row.status, row.due_us, row.attempts, row.claimed_by, row.hold_reason) == (
            PENDING,
            T0 + 9,
            0,
            None,
            "rate limit",
        )
        assert claim(database, "worker-b", now_us=T0 + 9) == [message_id]

    def test_cancel_ends_a_claimed_message_unsent_only_for_its_worker(
        self, database: Database
    ) -> None:
        add_messages(database, message_row("m1"))
        [message_id] = claim(database, "worker-a")

        with UnitOfWork(database) as uow:
            uow.outbox.cancel(message_id, worker="worker-b", reason="not mine")
            uow.outbox.cancel(message_id, worker="worker-a", reason="consent withdrawn")
            uow.commit()

        row = stored_message(database, message_id)
        assert (row.status, row.attempts, row.claimed_by, row.last_error) == (
            "cancelled",
            0,
            None,
            "consent withdrawn",
        )
        assert claim(database, "worker-b", now_us=T0 + 10**9) == []


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
