"""The dispatchers' side of the outbox: claiming due messages under a lease, and
recording each attempt's outcome, or giving a message back, only while the claim holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from sqlalchemy import Connection, update

from herald.store.message_status import CANCELLED, FAILED, PENDING, SENDING, SENT
from herald.store.sql import fetch_all, marks, select_in
from herald.store.tables import messages

# An attempt's outcome that is no message status: the message waits for another attempt.
RETRY = "retry"
# What a lease that ran out says of the attempt it was for.
INTERRUPTED = (
    "interrupted: its claim ran out with no outcome recorded (the dispatcher sending it "
    "stopped or stalled), so it may have gone out"
)


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


class ClaimedMessage(NamedTuple):
    """A message as a claim returns it: every column of ``messages`` (a test holds the
    two together)."""

    message_id: str
    dedup_key: str
    user_id: str
    event_id: str
    rule: str
    rule_version: str
    channel: str
    category: str
    recipient: str
    subject: str
    body: str
    html: str | None
    status: str
    created_us: int
    due_us: int
    sent_us: int | None
    attempts: int
    last_error: str | None
    hold_reason: str | None
    claimed_by: str | None
    lease_until_us: int | None


class OutboxClaims:
    _conn: Connection
    _dialect: str

    def claim_due(
        self,
        *,
        now_us: int,
        limit: int,
        worker: str,
        lease_us: int,
        max_attempts: int = 0,
        interrupted: list[ClaimedMessage] | None = None,
    ) -> list[ClaimedMessage]:
        """Atomically claim up to ``limit`` due messages for ``worker`` until the lease ends;
        they come in turn: the earliest due first, then the oldest.

        A message is due when a dispatcher claimed it and its lease ran out (that
        dispatcher died), or when it is pending and its due time has come. Two
        dispatchers never hold the same message: PostgreSQL skips locked rows, SQLite
        serialises writers.

        With ``max_attempts``, a lease that ran out counts as an attempt with no outcome,
        recorded as such; when it was the last, the message is a dead letter, returned
        with status ``failed`` and not claimed. Uncounted, a message whose send kills its
        dispatcher every time (a crash in a native library, running out of memory) would
        be claimed, and kill the next one, for ever. The messages whose lost attempt was
        counted and that stay claimed are also appended to ``interrupted``, if given: the
        claimer tells of them, as of any retry.
        """
        mark = marks(self._dialect, 1)
        # Two statements, each walking the (status, due_us) index in order and stopping at
        # its limit. One statement with an OR made SQLite gather and sort every due
        # message: a claim cost grew with the backlog, just when delivery had to catch up.
        expired = self._claim(
            f"status = '{SENDING}' AND lease_until_us < {mark}", now_us, limit, worker, lease_us
        )
        if expired and max_attempts:
            expired = self._count_interrupted(expired, now_us, worker, max_attempts)
            if interrupted is not None:
                interrupted += [row for row in expired if row.status != FAILED]
        if len(expired) == limit:
            return sorted(expired, key=_in_turn)
        due = self._claim(
            f"status = '{PENDING}' AND due_us <= {mark}",
            now_us,
            limit - len(expired),
            worker,
            lease_us,
        )
        # In turn: RETURNING promises no order (PostgreSQL's is arbitrary), and a dispatcher
        # sends, and hands out rate-limited turns, in the order it is given.
        return sorted(expired + due, key=_in_turn)

    def _claim(
        self, where: str, now_us: int, limit: int, worker: str, lease_us: int
    ) -> list[ClaimedMessage]:
        mark = marks(self._dialect, 1)
        if self._dialect == "postgresql":
            key, lock = "message_id", " FOR UPDATE SKIP LOCKED"
        else:
            # The rowid, which the (status, due_us) index holds: finding each row by its
            # message id cost a walk of the primary key's index too, inside the write lock
            # that ingestion waits for (a quarter of the claim's time).
            key, lock = "rowid", ""
        # Plain SQL on the driver's cursor: the dispatcher runs this every round, and
        # SQLAlchemy's rows cost more than the claim itself (see store/sql.py).
        rows = fetch_all(
            self._conn,
            f"UPDATE messages SET status = '{SENDING}', claimed_by = {mark}, "
            f"lease_until_us = {mark} WHERE {key} IN ("
            f"SELECT {key} FROM messages WHERE {where} "
            f"ORDER BY due_us LIMIT {mark}{lock}) "
            f"RETURNING {', '.join(ClaimedMessage._fields)}",
            (worker, now_us + lease_us, now_us, limit),
        )
        return [ClaimedMessage._make(row) for row in rows]

    def _count_interrupted(
        self, rows: list[ClaimedMessage], now_us: int, worker: str, max_attempts: int
    ) -> list[ClaimedMessage]:
        """``rows``, whose leases ran out, with the attempt that was cut off counted and
        recorded: those it leaves attempts to stay claimed, the others become dead letters."""
        counted, records = [], []
        for row in rows:
            attempt = row.attempts + 1
            if attempt < max_attempts:
                records.append(AttemptRecord(row.message_id, attempt, now_us, RETRY, INTERRUPTED))
                counted.append(row._replace(attempts=attempt, last_error=INTERRUPTED))
            else:
                detail = (
                    f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}: {INTERRUPTED}"
                )
                records.append(AttemptRecord(row.message_id, attempt, now_us, FAILED, detail))
                counted.append(
                    row._replace(
                        status=FAILED,
                        attempts=attempt,
                        last_error=detail,
                        claimed_by=None,
                        lease_until_us=None,
                    )
                )
        mark = marks(self._dialect, 1)
        self._conn.exec_driver_sql(
            f"UPDATE messages SET status = {mark}, attempts = {mark}, last_error = {mark}, "
            f"claimed_by = {mark}, lease_until_us = {mark} WHERE message_id = {mark}",
            [_interrupted_values(row) for row in counted],
        )
        self._insert_attempts(records, worker)
        return counted

    def record_attempts(self, records: Sequence[AttemptRecord], *, worker: str) -> set[str]:
        """Record finished attempts and move each message on: ``sent``, ``failed`` (dead
        letter) or back to ``pending`` due at ``next_due_us``. Messages whose claim
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
        mine = self._record_sent(sent, worker) + self._record_unsent(unsent, worker)
        self._insert_attempts(mine, worker)
        return {record.message_id for record in mine}

    def _insert_attempts(self, records: Sequence[AttemptRecord], worker: str) -> None:
        if records:
            self._conn.exec_driver_sql(
                "INSERT INTO delivery_attempts (message_id, attempt, at_us, outcome, detail, "
                f"worker) VALUES ({marks(self._dialect, 6)})",
                [
                    (r.message_id, r.attempt, r.at_us, r.outcome, r.detail[:2000], worker)
                    for r in records
                ],
            )

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
                "last_error = NULL, claimed_by = NULL, lease_until_us = NULL "
                f"WHERE claimed_by = {mark} AND status = '{SENDING}' AND message_id IN ({{}}) "
                "RETURNING message_id",
                by_id,
                prefix=(attempt, at_us, worker),
            )
            mine += [by_id[message_id] for (message_id,) in changed]
        return mine

    def _record_unsent(self, records: list[AttemptRecord], worker: str) -> list[AttemptRecord]:
        """Retries and dead letters: each its own due time and error."""
        if not records:
            return []
        mark = marks(self._dialect, 1)
        lock = " FOR UPDATE" if self._dialect == "postgresql" else ""
        owned = {
            row[0]
            for row in select_in(
                self._conn,
                self._dialect,
                f"SELECT message_id FROM messages WHERE claimed_by = {mark} "
                f"AND status = '{SENDING}' AND message_id IN ({{}}){lock}",
                [r.message_id for r in records],
                prefix=(worker,),
            )
        }
        mine = [r for r in records if r.message_id in owned]
        if mine:
            self._conn.exec_driver_sql(
                f"UPDATE messages SET status = {mark}, attempts = {mark}, "
                f"due_us = COALESCE({mark}, due_us), sent_us = NULL, last_error = {mark}, "
                f"claimed_by = NULL, lease_until_us = NULL WHERE message_id = {mark}",
                [
                    (
                        PENDING if r.outcome == RETRY else r.outcome,
                        r.attempt,
                        _due(r),
                        r.detail,
                        r.message_id,
                    )
                    for r in mine
                ],
            )
        return mine

    def dead_letter_unrecorded(
        self, message_id: str, *, worker: str, attempt: int, reason: str
    ) -> bool:
        """Make a message ``worker`` still claims a dead letter, without an attempt row:
        the last resort when the database refused its attempt's record. Left claimed, it
        would be sent again each time its lease ran out. Whether it was still claimed."""
        changed = self._conn.execute(
            update(messages)
            .where(
                messages.c.message_id == message_id,
                messages.c.claimed_by == worker,
                messages.c.status == SENDING,
            )
            .values(
                status=FAILED,
                attempts=attempt,
                last_error=reason,
                claimed_by=None,
                lease_until_us=None,
            )
        )
        return bool(changed.rowcount)

    def cancel(self, message_id: str, *, worker: str, reason: str) -> None:
        """Cancel a message ``worker`` claimed and will not send (its user withdrew consent)."""
        self._conn.execute(
            update(messages)
            .where(messages.c.message_id == message_id, messages.c.claimed_by == worker)
            .values(status=CANCELLED, last_error=reason, claimed_by=None, lease_until_us=None)
        )

    def release(self, message_id: str, *, worker: str, due_us: int, reason: str) -> None:
        """Give a claimed message back without an attempt (e.g. its channel is rate limited)."""
        self._conn.execute(
            update(messages)
            .where(messages.c.message_id == message_id, messages.c.claimed_by == worker)
            .values(
                status=PENDING,
                due_us=due_us,
                claimed_by=None,
                lease_until_us=None,
                hold_reason=reason,
            )
        )


def _interrupted_values(row: ClaimedMessage) -> tuple[Any, ...]:
    return (
        row.status,
        row.attempts,
        row.last_error,
        row.claimed_by,
        row.lease_until_us,
        row.message_id,
    )


def _in_turn(message: ClaimedMessage) -> tuple[int, int, str]:
    return message.due_us, message.created_us, message.message_id


def _due(record: AttemptRecord) -> int | None:
    if record.outcome == RETRY:
        return record.next_due_us if record.next_due_us is not None else record.at_us
    return None  # a finished message keeps its due time
