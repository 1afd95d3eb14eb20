"""The store's contract, run on every backend (the ``database`` fixture is parametrized over
SQLite and PostgreSQL): the outbox repository, its messages and their claims,
attempts and outcomes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from herald.domain.model import message_id_for
from herald.store.database import Database
from herald.store.message_status import PRUNED
from herald.store.outbox import (
    CANCELLED,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    AttemptRecord,
)
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.support.store_rows import (
    HOUR,
    LEASE,
    SECOND,
    T0,
    add_messages,
    claim,
    message_row,
    record,
    stored_message,
)


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
        add_messages(database, {**message_row("shell", status=FAILED), "body": PRUNED})

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


def test_the_database_s_clock_reads_the_time_in_microseconds(database: Database) -> None:
    before = time.time()
    with ReadOnly(database) as read:
        now_us = read.outbox.database_time_us()
    # Both backends here run on this host: its clock and theirs agree.
    assert before - 1 <= now_us / 1e6 <= time.time() + 1
