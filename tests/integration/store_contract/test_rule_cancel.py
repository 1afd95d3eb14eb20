"""The store's contract for an operator's cancel of a rule (`herald messages cancel
--rule`), on every backend like the rest of the contract (this folder): the
messages waiting are cancelled at once, and those being sent end cancelled however their
claim ends, unless they were sent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from herald.domain.model import message_id_for
from herald.store.database import Database
from herald.store.outbox import (
    CANCELLED,
    FAILED,
    INTERRUPTED,
    PENDING,
    SENDING,
    SENT,
    AttemptRecord,
    RuleCancel,
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

REASON = "cancelled by `herald messages cancel --rule R`"
LATER = T0 + 1000 * HOUR  # long after any lease, backoff or due time of these tests


def cancel_rule(database: Database, rule: str = "R") -> RuleCancel:
    with UnitOfWork(database) as uow:
        done = uow.outbox.cancel_rule(rule, reason=REASON, now_us=T0 + 5)
        uow.commit()
    return done


def being_sent_when_cancelled(database: Database) -> str:
    """A message of rule R claimed by worker-a, then its rule cancelled; its id."""
    add_messages(database, message_row("R:u_1"))
    [message_id] = claim(database, "worker-a")
    assert cancel_rule(database) == RuleCancel(cancelled=0, in_flight=1)
    assert stored_message(database, message_id).status == SENDING  # its send goes on
    return message_id


def test_cancelling_a_rule_cancels_its_waiting_messages_and_counts_those_being_sent(
    database: Database,
) -> None:
    add_messages(database, message_row("R:sending"))
    claim(database, "worker-a")
    add_messages(
        database,
        message_row("R:due"),
        message_row("R:held", due_us=T0 + HOUR),
        message_row("R:dead", status=FAILED),
        message_row("R:sent", status=SENT),
        message_row("OTHER:due"),
    )

    done = cancel_rule(database)

    assert done == RuleCancel(cancelled=3, in_flight=1)
    with ReadOnly(database) as read:
        assert read.outbox.count_by_status() == {CANCELLED: 3, SENDING: 1, SENT: 1, PENDING: 1}
    for key in ("R:due", "R:held", "R:dead"):
        row = stored_message(database, message_id_for(key))
        assert (row.last_error, row.due_us) == (REASON, T0 + 5), key


def end_with_retry(database: Database, message_id: str) -> None:
    assert record(database, message_id, "worker-a", "retry", detail="503", next_due_us=T0)


def end_as_dead_letter(database: Database, message_id: str) -> None:
    assert record(database, message_id, "worker-a", FAILED, detail="400 bad number")


def end_given_back(database: Database, message_id: str) -> None:
    with UnitOfWork(database) as uow:
        uow.outbox.release(message_id, worker="worker-a", due_us=T0, reason="rate limit")
        uow.commit()


def end_given_back_unanswered(database: Database, message_id: str) -> None:
    with UnitOfWork(database) as uow:
        released = uow.outbox.release_unanswered(worker="worker-a", lease_ends=[T0 + LEASE])
        uow.commit()
    assert released == 1


def end_as_unrecorded_dead_letter(database: Database, message_id: str) -> None:
    with UnitOfWork(database) as uow:
        assert uow.outbox.dead_letter_unrecorded(
            message_id, worker="worker-a", attempt=1, reason="the database refused it"
        )
        uow.commit()


def end_with_lease_run_out(database: Database, message_id: str) -> None:
    with UnitOfWork(database) as uow:
        claimed = uow.outbox.claim_due(
            now_us=T0 + LEASE + 1, limit=10, worker="worker-b", lease_us=LEASE, max_attempts=5
        )
        uow.commit()
    assert claimed == []  # cancelled, not claimed again nor handed to be sent


@pytest.mark.parametrize(
    "end",
    [
        end_with_retry,
        end_as_dead_letter,
        end_given_back,
        end_given_back_unanswered,
        end_as_unrecorded_dead_letter,
        end_with_lease_run_out,
    ],
    ids=lambda end: end.__name__.removeprefix("end_"),
)
def test_a_message_being_sent_when_its_rule_was_cancelled_ends_cancelled_unless_sent(
    database: Database, end: Callable[[Database, str], None]
) -> None:
    message_id = being_sent_when_cancelled(database)

    end(database, message_id)

    row = stored_message(database, message_id)
    assert (row.status, row.last_error, row.claimed_by, row.cancel_requested) == (
        CANCELLED,
        REASON,
        None,
        None,
    )
    assert claim(database, "worker-c", now_us=LATER) == []
    with UnitOfWork(database) as uow:
        assert uow.outbox.requeue(now_us=LATER) == 0  # no dead letter to send again
        uow.commit()


def test_an_attempt_ended_by_a_rule_s_cancel_keeps_its_own_outcome_in_the_history(
    database: Database,
) -> None:
    message_id = being_sent_when_cancelled(database)
    cancelled: dict[str, str] = {}

    with UnitOfWork(database) as uow:
        refused = AttemptRecord(message_id, 1, T0 + SECOND, "retry", "503", next_due_us=T0)
        recorded = uow.outbox.record_attempts([refused], worker="worker-a", cancelled=cancelled)
        uow.commit()

    assert recorded == {message_id}
    assert cancelled == {message_id: REASON}  # the dispatcher logs it as cancelled
    with ReadOnly(database) as read:
        [attempt] = read.outbox.attempts_for([message_id])[message_id]
    assert (attempt.outcome, attempt.detail) == ("retry", "503")
    row = stored_message(database, message_id)
    assert (row.attempts, row.due_us) == (1, T0 + SECOND)


def test_a_lease_run_out_after_a_rule_s_cancel_is_counted_as_an_attempt_that_may_have_gone_out(
    database: Database,
) -> None:
    message_id = being_sent_when_cancelled(database)

    end_with_lease_run_out(database, message_id)

    with ReadOnly(database) as read:
        [attempt] = read.outbox.attempts_for([message_id])[message_id]
    assert (attempt.outcome, attempt.detail) == ("retry", INTERRUPTED)
    assert stored_message(database, message_id).attempts == 1


def test_a_message_being_sent_when_its_rule_was_cancelled_stays_sent_once_sent(
    database: Database,
) -> None:
    message_id = being_sent_when_cancelled(database)

    assert record(database, message_id, "worker-a", SENT, detail="accepted")

    row = stored_message(database, message_id)
    assert (row.status, row.last_error, row.cancel_requested) == (SENT, None, None)


def test_a_rule_s_cancel_leaves_another_worker_s_claim_alone_until_its_own_ends(
    database: Database,
) -> None:
    """The mark holds whoever ends the claim: a second cancel changes nothing, and the
    worker that lost the claim records nothing."""
    message_id = being_sent_when_cancelled(database)
    assert cancel_rule(database) == RuleCancel(cancelled=0, in_flight=1)

    assert not record(database, message_id, "worker-b", "retry", next_due_us=T0)
    assert stored_message(database, message_id).status == SENDING
    end_with_retry(database, message_id)

    assert stored_message(database, message_id).status == CANCELLED
