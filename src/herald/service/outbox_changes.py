"""An operator's changes to the outbox, each in one transaction: dead letters re-queued,
a rule's messages cancelled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from herald.domain.timeutil import iso, to_micros
from herald.store.database import Database
from herald.store.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class Requeued:
    """What ``requeue_dead_letters`` did."""

    count: int  # dead letters put back in the queue
    # Asked by id and not re-queued: the message's row as stored (None: there is none).
    row: Any | None = None
    # Asked for every dead letter: those a prune redacted, left as they are.
    redacted_left: int = 0


def requeue_dead_letters(
    database: Database, *, now: datetime, message_id: str | None = None
) -> Requeued:
    """Put the dead letters (all, or the one of ``message_id``) back in the queue, due
    ``now``; those a prune redacted cannot be sent again, and stay."""
    with UnitOfWork(database) as uow:
        # Kept in the audit, as the reason the send came late and its attempts count
        # from 1 again: without it a dead letter later sent looked like any other send.
        reason = (
            f"re-queued by `herald messages retry` at {iso(now)} after it was "
            "dead-lettered: its attempts count from 1 again"
        )
        count = uow.outbox.requeue(now_us=to_micros(now), message_id=message_id, reason=reason)
        row = uow.outbox.get(message_id) if message_id and count == 0 else None
        left = 0 if message_id else uow.outbox.count_redacted_dead_letters()
        uow.commit()
    return Requeued(count, row, left)


@dataclass(frozen=True, slots=True)
class RuleCancelled:
    """What ``cancel_rule_messages`` did."""

    cancelled: int  # waiting to be sent, or dead letters: cancelled
    in_flight: int  # being sent: cancelled when their attempt ends, unless sent
    # When it found nothing of the rule: how many each rule that has some would cancel,
    # and whether the database holds any message of the rule at all (else its id is
    # likely typed wrong).
    others: dict[str, int] = field(default_factory=dict)
    known: bool = True


def cancel_rule_messages(
    database: Database, rule: str, *, now: datetime, how: str
) -> RuleCancelled:
    """Cancel ``rule``'s messages waiting to be sent and its dead letters, and mark those
    being sent to end cancelled; ``how`` (the command) is named in their reason."""
    with UnitOfWork(database) as uow:
        # When, too: a cancelled message keeps no other time of its cancel than this.
        reason = f"cancelled by `{how}` at {iso(now)}"
        done = uow.outbox.cancel_rule(rule, reason=reason, now_us=to_micros(now))
        nothing = not done.cancelled and not done.in_flight
        others = uow.outbox.cancellable_by_rule() if nothing else {}
        known = not nothing or uow.outbox.has_rule(rule)
        uow.commit()
    return RuleCancelled(done.cancelled, done.in_flight, others, known)
