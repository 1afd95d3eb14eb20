"""The dispatchers' side of the outbox: claiming due messages under a lease. Recording each
attempt's outcome, or giving a message back, only while the claim holds, is
claim_outcomes.py's."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Connection

from herald.store.claim_outcomes import RETRY, AttemptRecord, insert_attempts
from herald.store.message_status import CANCELLED, FAILED, PENDING, SENDING
from herald.store.sql import fetch_all, marks

# What a lease that ran out says of the attempt it was for.
INTERRUPTED = (
    "interrupted: its claim ran out with no outcome recorded (the dispatcher sending it "
    "stopped or stalled), so it may have gone out"
)


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
    cancel_requested: str | None


class OutboxClaims:
    _conn: Connection
    _dialect: str

    def database_time_us(self) -> int:
        """The database server's clock, in microseconds since the epoch: one clock for
        every dispatcher's leases, whatever host each runs on (SQLite's is the host's)."""
        if self._dialect == "postgresql":
            query = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint"
        else:  # julianday's day 2440587.5 is the Unix epoch; 'now' has milliseconds
            query = "SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
        return int(self._conn.exec_driver_sql(query).scalar_one())

    def cancels_asked(self, *, worker: str) -> set[str]:
        """The ids of the messages ``worker`` holds claimed whose rule's cancel was asked
        since the claim (``herald messages cancel``)."""
        mark = marks(self._dialect, 1)
        rows = self._conn.exec_driver_sql(
            f"SELECT message_id FROM messages WHERE status = '{SENDING}' "
            f"AND claimed_by = {mark} AND cancel_requested IS NOT NULL",
            (worker,),
        ).all()
        return {message_id for (message_id,) in rows}

    def claim_due(
        self,
        *,
        now_us: int,
        limit: int,
        worker: str,
        lease_us: int,
        max_attempts: int = 0,
        interrupted: list[ClaimedMessage] | None = None,
        cancelled: list[ClaimedMessage] | None = None,
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

        A message whose lease ran out after an operator cancelled its rule while it was
        being sent is cancelled, not claimed (its attempt counted as above), nor returned;
        it is appended to ``cancelled``, if given, as it ended (the cancel's reason its
        ``last_error``), for the claimer to count and tell of that attempt.
        """
        mark = marks(self._dialect, 1)
        # Two statements, each walking the (status, due_us) index in order and stopping at
        # its limit. One statement with an OR made SQLite gather and sort every due
        # message: a claim cost grew with the backlog, just when delivery had to catch up.
        expired = self._claim(
            f"status = '{SENDING}' AND lease_until_us < {mark}", now_us, limit, worker, lease_us
        )
        if any(row.cancel_requested is not None for row in expired):
            expired, ended = self._end_cancelled(expired, now_us, worker, max_attempts)
            if cancelled is not None:
                cancelled += ended
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

    def _end_cancelled(
        self, rows: list[ClaimedMessage], now_us: int, worker: str, max_attempts: int
    ) -> tuple[list[ClaimedMessage], list[ClaimedMessage]]:
        """Cancel those of ``rows``, whose leases ran out, whose rule's cancel was asked
        while they were being sent, with its reason (the attempt cut off counted, with
        ``max_attempts``: it may have gone out); the others, and those cancelled, as they
        ended."""
        ending = [row for row in rows if row.cancel_requested is not None]
        counted = 1 if max_attempts else 0
        mark = marks(self._dialect, 1)
        self._conn.exec_driver_sql(
            f"UPDATE messages SET status = '{CANCELLED}', attempts = {mark}, "
            f"last_error = {mark}, due_us = {mark}, cancel_requested = NULL, "
            f"claimed_by = NULL, lease_until_us = NULL WHERE message_id = {mark}",
            [
                (row.attempts + counted, row.cancel_requested, now_us, row.message_id)
                for row in ending
            ],
        )
        if counted:
            insert_attempts(
                self._conn,
                self._dialect,
                [
                    AttemptRecord(row.message_id, row.attempts + 1, now_us, RETRY, INTERRUPTED)
                    for row in ending
                ],
                worker,
            )
        ended = [
            row._replace(
                status=CANCELLED,
                attempts=row.attempts + counted,
                last_error=row.cancel_requested,
                due_us=now_us,
                cancel_requested=None,
                claimed_by=None,
                lease_until_us=None,
            )
            for row in ending
        ]
        return [row for row in rows if row.cancel_requested is None], ended

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
        insert_attempts(self._conn, self._dialect, records, worker)
        return counted


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
