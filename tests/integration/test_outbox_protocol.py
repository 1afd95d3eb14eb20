"""The outbox's claim-and-record protocol against a model, on every backend.

Hypothesis drives three dispatchers through random claims, recorded outcomes (sent,
retry, failed), re-queued dead letters and clock jumps past leases, and checks after
each step that the database agrees with a plain model of the protocol: a message is
held by at most one dispatcher at a time, only its holder can record an attempt, and a
message recorded as sent is never claimed or recorded again.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import delete, select

from herald.store.database import Database
from herald.store.outbox import FAILED, PENDING, SENDING, SENT, AttemptRecord
from herald.store.tables import delivery_attempts, messages
from herald.store.unit_of_work import UnitOfWork
from tests.support.store_rows import LEASE, SECOND, T0, message_row

WORKERS = ("a", "b", "c")
KEYS = tuple(f"RULE:u_{n}" for n in range(6))


class Model:
    """What the protocol promises for one message."""

    def __init__(self) -> None:
        self.status = PENDING
        self.due = T0
        self.holder: str | None = None
        self.lease_until = 0
        self.attempts = 0
        self.history: list[str] = []  # the outcome of every attempt recorded, oldest first

    def due_at(self, now: int) -> bool:
        return (self.status == PENDING and self.due <= now) or (
            self.status == SENDING and self.lease_until < now
        )


def test_the_outbox_keeps_its_promises_under_any_interleaving(database: Database) -> None:
    class Outbox(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with database.writer.begin() as connection:
                connection.execute(delete(delivery_attempts))
                connection.execute(delete(messages))
            with UnitOfWork(database) as uow:
                uow.outbox.add_many([message_row(key) for key in KEYS])
                uow.commit()
            self.now = T0
            self.model = {row["message_id"]: Model() for row in map(message_row, KEYS)}

        @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 4))
        def claim(self, worker: str, limit: int) -> None:
            due = {mid for mid, m in self.model.items() if m.due_at(self.now)}
            with UnitOfWork(database) as uow:
                rows = uow.outbox.claim_due(
                    now_us=self.now, limit=limit, worker=worker, lease_us=LEASE
                )
                uow.commit()
            claimed = [row.message_id for row in rows]
            assert set(claimed) <= due, "claimed a message that was not due"
            assert len(claimed) == len(set(claimed)) == min(limit, len(due))
            for mid in claimed:
                m = self.model[mid]
                m.status, m.holder, m.lease_until = SENDING, worker, self.now + LEASE

        @rule(
            worker=st.sampled_from(WORKERS),
            index=st.integers(0, len(KEYS) - 1),
            outcome=st.sampled_from([SENT, "retry", FAILED]),
            delay=st.integers(0, 3 * LEASE),
        )
        def record(self, worker: str, index: int, outcome: str, delay: int) -> None:
            mid = list(self.model)[index]
            m = self.model[mid]
            expected = m.status == SENDING and m.holder == worker
            attempt = AttemptRecord(
                mid, m.attempts + 1, self.now, outcome, "provider said so", self.now + delay
            )
            with UnitOfWork(database) as uow:
                recorded = uow.outbox.record_attempts([attempt], worker=worker) == {
                    attempt.message_id
                }
                uow.commit()
            assert recorded == expected, f"{worker} recording {mid}: {recorded}, not {expected}"
            if recorded:
                m.attempts += 1
                m.holder = None
                m.history.append(outcome)
                m.status = PENDING if outcome == "retry" else outcome
                m.due = self.now + delay if outcome == "retry" else m.due

        @rule()
        def requeue_dead_letters(self) -> None:
            with UnitOfWork(database) as uow:
                uow.outbox.requeue(now_us=self.now)
                uow.commit()
            for m in self.model.values():
                if m.status == FAILED:  # with every attempt ahead of it again
                    m.status, m.due, m.attempts = PENDING, self.now, 0

        @rule(step=st.sampled_from([SECOND, LEASE // 2, LEASE + SECOND, 3 * LEASE]))
        def time_passes(self, step: int) -> None:
            self.now += step

        @invariant()
        def the_database_agrees_with_the_model(self) -> None:
            with database.reader.connect() as connection:
                stored: dict[str, Any] = {
                    row.message_id: row
                    for row in connection.execute(
                        select(
                            messages.c.message_id,
                            messages.c.status,
                            messages.c.claimed_by,
                            messages.c.attempts,
                            messages.c.due_us,
                        )
                    )
                }
                history: dict[str, list[str]] = {mid: [] for mid in self.model}
                for attempt in connection.execute(
                    select(delivery_attempts.c.message_id, delivery_attempts.c.outcome).order_by(
                        delivery_attempts.c.id
                    )
                ):
                    history[attempt.message_id].append(attempt.outcome)
            for mid, m in self.model.items():
                row = stored[mid]
                assert (row.status, row.attempts) == (m.status, m.attempts), mid
                assert row.claimed_by == (m.holder if m.status == SENDING else None), mid
                if m.status == PENDING:  # a retry is due when its attempt said
                    assert row.due_us == m.due, mid
                # An attempt the store refused leaves no trace in the message's history,
                # and a message is sent at most once.
                assert history[mid] == m.history, mid
                assert history[mid].count(SENT) <= 1, mid

    run_state_machine_as_test(
        Outbox,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
