"""How a dispatcher ends its claims: recording each attempt's outcome (sent, a retry, a
dead letter), or giving a message back, or cancelling it, unsent; each only while the
claim is still that dispatcher's. A message whose rule an operator cancelled while it
was being sent (``cancel_requested``) ends cancelled, unless sent, where it would have
gone back to the queue or become a dead letter. Claiming is claims.py's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection, case, func, update

from herald.store.message_status import CANCELLED, FAILED, PENDING, SENDING, SENT
from herald.store.sql import marks, select_in
from herald.store.tables import messages

# An attempt's outcome that is no message status: the message waits for another attempt.
RETRY = "retry"

# Whether an operator cancelled the message's rule while it was being sent.
_CANCEL_ASKED = messages.c.cancel_requested.is_not(None)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished delivery attempt. ``next_due_us`` is when a retry is due (None: now
    for a retry, unchanged otherwise)."""

    message_id: str
    attempt: int
    at_us: int
    outcome: str  # sent | retry | failed
    detail: str
    next_due_us: int | None = None


class OutboxClaimOutcomes:
    _conn: Connection
    _dialect: str

    def record_attempts(
        self,
        records: Sequence[AttemptRecord],
        *,
        worker: str,
        cancelled: dict[str, str] | None = None,
    ) -> set[str]:
        """Record finished attempts and move each message on: ``sent``, ``failed`` (dead
        letter) or back to ``pending`` due at ``next_due_us``; or, unsent, ``cancelled``
        when its rule's cancel was asked while it was being sent (those are added to
        ``cancelled``, if given, id -> the cancel's reason). Messages whose claim
        ``worker`` lost are left alone. Returns the ids of the messages recorded.

        A NUL character in a detail (a receiver's answer quoted) is recorded as U+FFFD:
        PostgreSQL's text cannot hold it, and a round whose recording failed would be sent
        again, whole, once its claims ran out."""
        records = [
            replace(r, detail=r.detail.replace("\x00", "\ufffd")) if "\x00" in r.detail else r
            for r in records
        ]
        sent = [r for r in records if r.outcome == SENT]
        unsent = [r for r in records if r.outcome != SENT]
        mine = self._record_sent(sent, worker) + self._record_unsent(unsent, worker, cancelled)
        insert_attempts(self._conn, self._dialect, mine, worker)
        return {record.message_id for record in mine}

    def release_unanswered(self, *, worker: str, lease_ends: Collection[int]) -> int:
        """Give back, unsent and without counting an attempt, the messages of ``worker``'s
        claims whose leases end at ``lease_ends``: claims whose commit went through while
        the dispatcher heard it fail (the connection lost before the answer), so that it
        sent none of them (one whose rule's cancel was asked meanwhile ends cancelled).
        Returns how many."""
        if not lease_ends:
            return 0
        mark = marks(self._dialect, 1)
        released = self._conn.exec_driver_sql(
            "UPDATE messages SET status = CASE WHEN cancel_requested IS NULL "
            f"THEN '{PENDING}' ELSE '{CANCELLED}' END, "
            "last_error = COALESCE(cancel_requested, last_error), cancel_requested = NULL, "
            "claimed_by = NULL, lease_until_us = NULL "
            f"WHERE claimed_by = {mark} AND status = '{SENDING}' "
            f"AND lease_until_us IN ({marks(self._dialect, len(lease_ends))})",
            (worker, *lease_ends),
        )
        return int(released.rowcount)

    def recorded_earlier(self, records: Sequence[AttemptRecord], *, worker: str) -> set[str]:
        """The ids of ``records`` that ``worker`` already recorded, the same attempt at the
        same time: a recording whose commit went through but whose answer the connection
        lost, so that it was tried again and found its claims gone."""
        if not records:
            return set()
        wanted = {(r.message_id, r.attempt, r.at_us) for r in records}
        mark = marks(self._dialect, 1)
        found = select_in(
            self._conn,
            self._dialect,
            "SELECT message_id, attempt, at_us FROM delivery_attempts "
            f"WHERE worker = {mark} AND message_id IN ({{}})",
            [r.message_id for r in records],
            prefix=(worker,),
        )
        return {
            message_id
            for message_id, attempt, at_us in found
            if (message_id, attempt, at_us) in wanted
        }

    def _record_sent(self, records: list[AttemptRecord], worker: str) -> list[AttemptRecord]:
        """Sent messages, in one statement per attempt number and time (a round's are all
        alike): it changes only those still claimed by ``worker`` and names them. A
        statement per message was the larger half of a round's time in the write lock."""
        alike: dict[tuple[int, int], dict[str, AttemptRecord]] = defaultdict(dict)
        for record in records:
            alike[record.attempt, record.at_us][record.message_id] = record
        mark = marks(self._dialect, 1)
        mine = []
        for (attempt, at_us), by_id in alike.items():
            changed = select_in(
                self._conn,
                self._dialect,
                f"UPDATE messages SET status = '{SENT}', attempts = {mark}, sent_us = {mark}, "
                "last_error = NULL, claimed_by = NULL, lease_until_us = NULL, "
                "cancel_requested = NULL "  # sent: beyond recall
                f"WHERE claimed_by = {mark} AND status = '{SENDING}' AND message_id IN ({{}}) "
                "RETURNING message_id",
                by_id,
                prefix=(attempt, at_us, worker),
            )
            mine += [by_id[message_id] for (message_id,) in changed]
        return mine

    def _record_unsent(
        self, records: list[AttemptRecord], worker: str, cancelled: dict[str, str] | None
    ) -> list[AttemptRecord]:
        """Retries and dead letters: each its own due time and error; cancelled, with the
        cancel's reason and due at its attempt's time, when its rule's cancel was asked."""
        if not records:
            return []
        mark = marks(self._dialect, 1)
        lock = " FOR UPDATE" if self._dialect == "postgresql" else ""
        # Locked on PostgreSQL (SQLite serialises writers), so that a rule's cancel asked
        # meanwhile waits for this record, or this record reads it.
        cancel_asked = dict(
            select_in(
                self._conn,
                self._dialect,
                f"SELECT message_id, cancel_requested FROM messages WHERE claimed_by = {mark} "
                f"AND status = '{SENDING}' AND message_id IN ({{}}){lock}",
                [r.message_id for r in records],
                prefix=(worker,),
            )
        )
        mine = [r for r in records if r.message_id in cancel_asked]
        if mine:
            self._conn.exec_driver_sql(
                f"UPDATE messages SET status = {mark}, attempts = {mark}, "
                f"due_us = COALESCE({mark}, due_us), sent_us = NULL, last_error = {mark}, "
                "claimed_by = NULL, lease_until_us = NULL, cancel_requested = NULL "
                f"WHERE message_id = {mark}",
                [_unsent_values(r, cancel_asked[r.message_id]) for r in mine],
            )
        if cancelled is not None:
            for record in mine:
                if (cancel_reason := cancel_asked[record.message_id]) is not None:
                    cancelled[record.message_id] = cancel_reason
        return mine

    def dead_letter_unrecorded(
        self, message_id: str, *, worker: str, attempt: int, reason: str
    ) -> bool:
        """Make a message ``worker`` still claims a dead letter, without an attempt row:
        the last resort when the database refused its attempt's record. Left claimed, it
        would be sent again each time its lease ran out; one whose rule's cancel was asked
        ends cancelled instead. Whether it was still claimed."""
        changed = self._conn.execute(
            update(messages)
            .where(
                messages.c.message_id == message_id,
                messages.c.claimed_by == worker,
                messages.c.status == SENDING,
            )
            .values(
                status=case((_CANCEL_ASKED, CANCELLED), else_=FAILED),
                attempts=attempt,
                last_error=func.coalesce(messages.c.cancel_requested, reason),
                claimed_by=None,
                lease_until_us=None,
                cancel_requested=None,
            )
        )
        return bool(changed.rowcount)

    def cancel(self, message_id: str, *, worker: str, reason: str) -> None:
        """Cancel a message ``worker`` claimed and will not send (its user withdrew consent)."""
        self._conn.execute(
            update(messages)
            .where(messages.c.message_id == message_id, messages.c.claimed_by == worker)
            .values(
                status=CANCELLED,
                last_error=reason,
                claimed_by=None,
                lease_until_us=None,
                cancel_requested=None,
            )
        )

    def release(self, message_id: str, *, worker: str, due_us: int, reason: str) -> str | None:
        """Give a claimed message back without an attempt (e.g. its channel is rate limited);
        one whose rule's cancel was asked while it was claimed ends cancelled instead, and
        the cancel's reason is returned (None otherwise, or when the claim was no longer
        ``worker``'s)."""
        ended = self._conn.execute(
            update(messages)
            .where(messages.c.message_id == message_id, messages.c.claimed_by == worker)
            .values(
                status=case((_CANCEL_ASKED, CANCELLED), else_=PENDING),
                due_us=due_us,
                last_error=func.coalesce(messages.c.cancel_requested, messages.c.last_error),
                claimed_by=None,
                lease_until_us=None,
                hold_reason=case((_CANCEL_ASKED, messages.c.hold_reason), else_=reason),
                cancel_requested=None,
            )
            .returning(messages.c.status, messages.c.last_error)
        ).first()
        return ended.last_error if ended is not None and ended.status == CANCELLED else None


def insert_attempts(
    conn: Connection, dialect: str, records: Sequence[AttemptRecord], worker: str
) -> None:
    """Add ``records`` to the attempts of their messages, as ``worker``'s."""
    if records:
        conn.exec_driver_sql(
            "INSERT INTO delivery_attempts (message_id, attempt, at_us, outcome, detail, "
            f"worker) VALUES ({marks(dialect, 6)})",
            [
                (r.message_id, r.attempt, r.at_us, r.outcome, r.detail[:2000], worker)
                for r in records
            ],
        )


def _unsent_values(record: AttemptRecord, cancel_reason: str | None) -> tuple[object, ...]:
    """The values of ``_record_unsent``'s update of ``record``'s message."""
    if cancel_reason is not None:
        return (CANCELLED, record.attempt, record.at_us, cancel_reason, record.message_id)
    status = PENDING if record.outcome == RETRY else record.outcome
    return (status, record.attempt, _due(record), record.detail, record.message_id)


def _due(record: AttemptRecord) -> int | None:
    if record.outcome == RETRY:
        return record.next_due_us if record.next_due_us is not None else record.at_us
    return None  # a finished message keeps its due time
