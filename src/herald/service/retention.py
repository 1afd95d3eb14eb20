"""Retention: delete old history in small transactions, so ingestion never waits long."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from herald.domain.timeutil import to_micros
from herald.store.database import Database
from herald.store.outbox import FAILED, SENT
from herald.store.tables import delivery_attempts, events, messages, users

REDACTED = "(pruned)"


def prune_history(
    database: Database,
    *,
    cutoff: datetime,
    batch_size: int = 5000,
    progress: Callable[[str, int], None] = lambda _kind, _n: None,
    keep_rules: Collection[str] = (),
) -> dict[str, int]:
    """Delete events older than ``cutoff`` (event time) and finished messages created
    before it. Users whose events were pruned are marked, so the audit can say so.
    Pending messages are kept whatever their age: they have not been delivered yet.
    Messages of ``keep_rules`` (rules limited once per user) are redacted, not deleted:
    their dedup keys must outlive any retention period."""
    cutoff_us = to_micros(cutoff)
    totals = {"events": 0, "messages": 0}
    while True:
        with database.writer.begin() as conn:
            doomed = conn.execute(
                select(events.c.seq, events.c.user_id)
                .where(events.c.event_time_us < cutoff_us)
                .limit(batch_size)
            ).all()
            if not doomed:
                break
            conn.execute(delete(events).where(events.c.seq.in_([row.seq for row in doomed])))
            conn.execute(
                update(users)
                .where(users.c.user_id.in_({row.user_id for row in doomed}))
                .values(pruned_before_us=cutoff_us)
            )
        totals["events"] += len(doomed)
        progress("events", totals["events"])
    finished = messages.c.created_us < cutoff_us, messages.c.status.in_([SENT, FAILED])
    while True:
        with database.writer.begin() as conn:
            ids = (
                conn.execute(
                    select(messages.c.message_id)
                    .where(*finished, messages.c.rule.not_in(list(keep_rules)))
                    .limit(batch_size)
                )
                .scalars()
                .all()
            )
            if not ids:
                break
            conn.execute(delete(delivery_attempts).where(delivery_attempts.c.message_id.in_(ids)))
            conn.execute(delete(messages).where(messages.c.message_id.in_(ids)))
        totals["messages"] += len(ids)
        progress("messages", totals["messages"])
    if keep_rules:
        totals["redacted"] = _redact(database, finished, keep_rules, batch_size, progress)
    return totals


def _redact(
    database: Database,
    finished: tuple[Any, ...],
    keep_rules: Collection[str],
    batch_size: int,
    progress: Callable[[str, int], None],
) -> int:
    """Keep the rows of lifetime limits (their dedup keys still block a second welcome
    email) but drop their content and delivery history, a batch per transaction.

    The walk goes forward by message id: rows redacted by an earlier prune stay in the
    table for good, and starting each batch from the beginning would pass them again."""
    redacted, after = 0, ""
    while True:
        with database.writer.begin() as conn:
            ids = (
                conn.execute(
                    select(messages.c.message_id)
                    .where(
                        *finished,
                        messages.c.rule.in_(list(keep_rules)),
                        messages.c.message_id > after,
                    )
                    .order_by(messages.c.message_id)
                    .limit(batch_size)
                )
                .scalars()
                .all()
            )
            if not ids:
                return redacted
            after = ids[-1]
            conn.execute(delete(delivery_attempts).where(delivery_attempts.c.message_id.in_(ids)))
            result = conn.execute(
                update(messages)
                .where(messages.c.message_id.in_(ids), messages.c.body != REDACTED)
                .values(subject="", body=REDACTED, html=None, recipient="", last_error=None)
            )
        if result.rowcount:
            redacted += int(result.rowcount)
            progress("redacted", redacted)
