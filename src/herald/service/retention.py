"""Retention: delete old history in small transactions, so ingestion never waits long."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    delete,
    exists,
    func,
    select,
    tuple_,
    update,
)

from herald.domain.timeutil import next_utc_midnight, to_micros
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
    """Delete events older than ``cutoff`` (event time) and the finished messages they
    created before it. Pending messages are kept whatever their age: they have not been
    delivered yet. Messages of ``keep_rules`` (rules limited once per user) are redacted,
    not deleted: their dedup keys must outlive any retention period. ``totals`` has
    "redacted" only when there are such rules.

    Users whose events were pruned are marked up to the end of the cutoff's UTC day:
    the rules skip their events dated before that, because a pruned message may have
    held that day's limit. The audit says so too."""
    cutoff_us = to_micros(cutoff)
    marker_us = to_micros(next_utc_midnight(cutoff))
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
                .values(pruned_before_us=marker_us)
            )
        totals["events"] += len(doomed)
        progress("events", totals["events"])
    deleted, redacted = _prune_messages(database, cutoff_us, batch_size, keep_rules, progress)
    totals["messages"] = deleted
    if keep_rules:
        totals["redacted"] = redacted
    return totals


def count_prunable(
    database: Database, *, cutoff: datetime, keep_rules: Collection[str] = ()
) -> dict[str, int]:
    """What ``prune_history`` would do now with the same arguments, changing nothing:
    the same keys, with the numbers of events and messages it would delete and redact."""
    cutoff_us = to_micros(cutoff)
    finished = (
        messages.c.status.in_((SENT, FAILED)),
        messages.c.created_us < cutoff_us,
        _event_gone_or_older(cutoff_us),
    )
    kept = messages.c.rule.in_(keep_rules)
    with database.reader.connect() as conn:
        totals = {
            "events": _count(conn, events, events.c.event_time_us < cutoff_us),
            "messages": _count(conn, messages, *finished, ~kept),
        }
        if keep_rules:
            totals["redacted"] = _count(
                conn, messages, *finished, kept, messages.c.body != REDACTED
            )
    return totals


def _event_gone_or_older(cutoff_us: int) -> ColumnElement[bool]:
    """A message goes only with its event: one created before the cutoff by an event
    dated after it (a client's clock ahead) holds a limit of a day that is kept."""
    return ~exists().where(
        events.c.event_id == messages.c.event_id, events.c.event_time_us >= cutoff_us
    )


def _count(conn: Connection, table: Table, *where: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _prune_messages(
    database: Database,
    cutoff_us: int,
    batch_size: int,
    keep_rules: Collection[str],
    progress: Callable[[str, int], None],
) -> tuple[int, int]:
    """Delete finished messages created before the cutoff, or redact those of
    ``keep_rules`` (lifetime limits: their dedup keys still block a second welcome
    email). Returns (deleted, redacted).

    The messages are found by reads that walk the outbox's (status, due time) index
    forward, a page at a time, and only the changes take the write lock. Redacted rows
    stay for good, so a walk that started over for every batch would pass them again
    each time (with the write lock held, on SQLite); this one passes each row once."""
    counts = {"messages": 0, "redacted": 0}
    for status in (SENT, FAILED):
        # Re-checked under the write lock: a dead letter re-queued since the read stays.
        finished = (
            messages.c.status == status,
            messages.c.created_us < cutoff_us,
            _event_gone_or_older(cutoff_us),
        )
        for doomed, kept in _finished_pages(database, status, cutoff_us, batch_size, keep_rules):
            with database.writer.begin() as conn:
                still = select(messages.c.message_id).where(
                    *finished, messages.c.message_id.in_(doomed + kept)
                )
                conn.execute(
                    delete(delivery_attempts).where(delivery_attempts.c.message_id.in_(still))
                )
                changed = {
                    "messages": conn.execute(
                        delete(messages).where(*finished, messages.c.message_id.in_(doomed))
                    ).rowcount,
                    "redacted": conn.execute(
                        update(messages)
                        .where(
                            *finished, messages.c.message_id.in_(kept), messages.c.body != REDACTED
                        )
                        .values(subject="", body=REDACTED, html=None, recipient="", last_error=None)
                    ).rowcount,
                }
            for kind, count in changed.items():
                if count:
                    counts[kind] += int(count)
                    progress(kind, counts[kind])
    return counts["messages"], counts["redacted"]


def _finished_pages(
    database: Database, status: str, cutoff_us: int, batch_size: int, keep_rules: Collection[str]
) -> Iterator[tuple[list[str], list[str]]]:
    """(ids to delete, ids to redact) of each page of ``status`` messages created before
    the cutoff, in (due time, id) order; pages with nothing to change are skipped."""
    c = messages.c
    after: tuple[int, str] = (-(2**63), "")
    while True:
        with database.reader.connect() as conn:
            page = conn.execute(
                select(c.message_id, c.rule, c.body, c.due_us)
                .where(
                    c.status == status,
                    c.created_us < cutoff_us,
                    c.due_us >= after[0],  # lets the index start the walk at the last page
                    tuple_(c.due_us, c.message_id) > tuple_(*after),
                )
                .order_by(c.due_us, c.message_id)
                .limit(batch_size)
            ).all()
        if not page:
            return
        after = (page[-1].due_us, page[-1].message_id)
        doomed = [row.message_id for row in page if row.rule not in keep_rules]
        kept = [row.message_id for row in page if row.rule in keep_rules and row.body != REDACTED]
        if doomed or kept:
            yield doomed, kept
