"""Retention's statements: old events and finished messages, found, counted, deleted or
redacted. The loop, the batches and the policy are the service's (service/retention.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    delete,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)

from herald.store.message_status import CANCELLED, FAILED, PRUNED, REDACTED, SENT
from herald.store.tables import delivery_attempts, events, messages, users

FINISHED = (SENT, FAILED, CANCELLED)
FIRST_PAGE: tuple[int, str] = (-(2**63), "")  # before every (due time, message id)


class RetentionRepository:
    """Retention's reads and changes on one connection, in its transaction; never commits."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def events_before(self, cutoff_us: int, *, limit: int) -> list[Any]:
        """Up to ``limit`` events (rows of ``seq``, ``user_id``) dated before the cutoff,
        in no particular order."""
        return list(
            self._conn.execute(
                select(events.c.seq, events.c.user_id)
                .where(events.c.event_time_us < cutoff_us)
                .limit(limit)
            ).all()
        )

    def delete_events(self, seqs: Sequence[int]) -> None:
        self._conn.execute(delete(events).where(events.c.seq.in_(seqs)))

    def mark_pruned(self, user_ids: Collection[str], *, before_us: int) -> None:
        """Record that the users' history before ``before_us`` is gone (the rules skip
        their events dated before it, and the audit says so)."""
        self._conn.execute(
            update(users)
            .where(users.c.user_id.in_(user_ids))
            # Never back: a later prune with an older cutoff (a late event it deletes)
            # must not reopen days whose messages an earlier one deleted.
            .where(or_(users.c.pruned_before_us.is_(None), users.c.pruned_before_us < before_us))
            .values(pruned_before_us=before_us)
        )

    def finished_page(
        self, status: str, cutoff_us: int, *, after: tuple[int, str] = FIRST_PAGE, limit: int
    ) -> list[Any]:
        """Up to ``limit`` messages of ``status`` created before the cutoff (rows of
        ``message_id``, ``rule``, ``body``, ``due_us``), in (due time, id) order, after the
        (due time, id) ``after``. The walk follows the outbox's
        (status, due time) index: no sort of every match."""
        c = messages.c
        return list(
            self._conn.execute(
                select(c.message_id, c.rule, c.body, c.due_us)
                .where(
                    c.status == status,
                    c.created_us < cutoff_us,
                    c.due_us >= after[0],  # lets the index start the walk at the last page
                    tuple_(c.due_us, c.message_id) > tuple_(*after),
                )
                .order_by(c.due_us, c.message_id)
                .limit(limit)
            ).all()
        )

    def prune_finished(
        self, status: str, cutoff_us: int, *, doomed: Sequence[str], kept: Sequence[str]
    ) -> tuple[int, int]:
        """Delete the ``doomed`` messages and redact the ``kept`` ones (unless they already
        are), with the delivery attempts of both; only those still ``status``, created
        before the cutoff, and whose event is gone or older. Returns (deleted, redacted)."""
        # Re-checked in this transaction: a dead letter re-queued since it was read stays.
        finished = (
            messages.c.status == status,
            messages.c.created_us < cutoff_us,
            _event_gone_or_older(cutoff_us),
        )
        ids = messages.c.message_id
        still = select(ids).where(*finished, ids.in_([*doomed, *kept]))
        self._conn.execute(
            delete(delivery_attempts).where(delivery_attempts.c.message_id.in_(still))
        )
        deleted = self._conn.execute(delete(messages).where(*finished, ids.in_(doomed))).rowcount
        redacted = self._conn.execute(
            update(messages)
            .where(*finished, ids.in_(kept), messages.c.body.not_in(REDACTED))
            .values(subject="", body=PRUNED, html=None, recipient="", last_error=None)
        ).rowcount
        return int(deleted), int(redacted)

    def rules_of_finished(self, cutoff_us: int) -> set[str]:
        """The rules that made the finished messages created before the cutoff."""
        query = select(messages.c.rule).where(
            messages.c.status.in_(FINISHED), messages.c.created_us < cutoff_us
        )
        return set(self._conn.execute(query.distinct()).scalars())

    def count_events_before(self, cutoff_us: int) -> int:
        return _count(self._conn, events, events.c.event_time_us < cutoff_us)

    def count_finished(self, cutoff_us: int, *, rules: Collection[str], of_rules: bool) -> int:
        """Finished messages created before the cutoff whose event is gone or older: those
        of ``rules`` not yet redacted (``of_rules``), or those of every other rule."""
        finished = (
            messages.c.status.in_(FINISHED),
            messages.c.created_us < cutoff_us,
            _event_gone_or_older(cutoff_us),
        )
        kept = messages.c.rule.in_(rules)
        if of_rules:
            return _count(self._conn, messages, *finished, kept, messages.c.body.not_in(REDACTED))
        return _count(self._conn, messages, *finished, ~kept)


def _event_gone_or_older(cutoff_us: int) -> ColumnElement[bool]:
    """A message goes only with its event: one created before the cutoff by an event
    dated after it (a client's clock ahead) holds a limit of a day that is kept."""
    return ~exists().where(
        events.c.event_id == messages.c.event_id, events.c.event_time_us >= cutoff_us
    )


def _count(conn: Connection, table: Table, *where: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())
