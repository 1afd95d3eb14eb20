"""Retention: delete old history in small transactions, so ingestion never waits long."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime

from herald.domain.timeutil import next_utc_midnight, to_micros
from herald.store.checkpoints import Checkpointer
from herald.store.database import Database
from herald.store.outbox import REDACTED
from herald.store.retention import FINISHED, FIRST_PAGE
from herald.store.unit_of_work import ReadOnly, UnitOfWork


@dataclass(frozen=True, slots=True)
class PruneTotals:
    """Rows a prune deleted (events, messages) and messages it redacted."""

    events: int
    messages: int
    redacted: int


def prune_history(
    database: Database,
    *,
    cutoff: datetime,
    batch_size: int = 5000,
    progress: Callable[[str, int], None] = lambda _kind, _n: None,
    keep_rules: Collection[str] = (),
) -> PruneTotals:
    """Delete events older than ``cutoff`` (event time) and the finished messages they
    created before it. Pending messages are kept whatever their age: they have not been
    delivered yet. Messages of ``keep_rules`` (rules limited once per user) are redacted,
    not deleted: their dedup keys must outlive any retention period.

    Users whose events were pruned are marked up to the end of the cutoff's UTC day:
    the rules skip their events dated before that, because a pruned message may have
    held that day's limit. The audit says so too."""
    cutoff_us = to_micros(cutoff)
    checkpoint = _checkpoint_of(database)
    pruned_events = _prune_events(
        database, cutoff_us, to_micros(history_fence(cutoff)), batch_size, progress, checkpoint
    )
    deleted, redacted = _prune_messages(
        database, cutoff_us, batch_size, keep_rules, progress, checkpoint
    )
    return PruneTotals(events=pruned_events, messages=deleted, redacted=redacted)


def _prune_events(
    database: Database,
    cutoff_us: int,
    fence_us: int,
    batch_size: int,
    progress: Callable[[str, int], None],
    checkpoint: Callable[[], None],
) -> int:
    """Delete the events before the cutoff, ``batch_size`` a transaction, and fence their
    users' history at ``fence_us``. Returns how many were deleted."""
    pruned = 0
    while True:
        with UnitOfWork(database) as uow:
            # No ingestion may read a user's profile before this fence and, once the next
            # phase has deleted that day's message, the held dedup keys after it: it would
            # send the day's message again. Ingestion locks before it reads.
            uow.lock_all()
            doomed = uow.retention.events_before(cutoff_us, limit=batch_size)
            if not doomed:
                return pruned
            uow.retention.delete_events([row.seq for row in doomed])
            uow.retention.mark_pruned({row.user_id for row in doomed}, before_us=fence_us)
            uow.commit()
        checkpoint()
        pruned += len(doomed)
        progress("events", pruned)


def _checkpoint_of(database: Database) -> Callable[[], None]:
    """What copies SQLite's write-ahead log into the database file after each batch. Run
    alone (the server stopped for a maintenance window), a prune has no checkpointer
    thread beside it, and the log would grow by every page it writes, to more than the
    database itself; copied after each commit, it starts over at the next one."""
    if not database.is_sqlite:
        return lambda: None
    return Checkpointer(database).checkpoint


def history_fence(cutoff: datetime) -> datetime:
    """Where a prune at ``cutoff`` fences the history of the users whose events it
    deletes (their audit's ``history_pruned_before``; the rules skip their events dated
    before it): the end of the cutoff's UTC day, since that day's limits may have been
    held by a message pruned with its event."""
    return next_utc_midnight(cutoff)


def count_prunable(
    database: Database, *, cutoff: datetime, keep_rules: Collection[str] = ()
) -> PruneTotals:
    """What ``prune_history`` would do now with the same arguments, changing nothing."""
    cutoff_us = to_micros(cutoff)
    with ReadOnly(database) as read:
        return PruneTotals(
            events=read.retention.count_events_before(cutoff_us),
            messages=read.retention.count_finished(cutoff_us, rules=keep_rules, of_rules=False),
            redacted=(
                read.retention.count_finished(cutoff_us, rules=keep_rules, of_rules=True)
                if keep_rules
                else 0
            ),
        )


def _prune_messages(
    database: Database,
    cutoff_us: int,
    batch_size: int,
    keep_rules: Collection[str],
    progress: Callable[[str, int], None],
    checkpoint: Callable[[], None],
) -> tuple[int, int]:
    """Delete finished messages created before the cutoff, or redact those of
    ``keep_rules`` (lifetime limits: their dedup keys still block a second welcome
    email). Returns (deleted, redacted).

    The messages are found by reads that walk the outbox's (status, due time) index
    forward, a page at a time, and only the changes take the write lock. Redacted rows
    stay for good, so a walk that started over for every batch would pass them again
    each time (with the write lock held, on SQLite); this one passes each row once."""
    counts = {"messages": 0, "redacted": 0}
    for status in FINISHED:
        for doomed, kept in _finished_pages(database, status, cutoff_us, batch_size, keep_rules):
            with UnitOfWork(database) as uow:
                deleted, redacted = uow.retention.prune_finished(
                    status, cutoff_us, doomed=doomed, kept=kept
                )
                uow.commit()
            checkpoint()
            for kind, count in (("messages", deleted), ("redacted", redacted)):
                if count:
                    counts[kind] += count
                    progress(kind, counts[kind])
    return counts["messages"], counts["redacted"]


def _finished_pages(
    database: Database, status: str, cutoff_us: int, batch_size: int, keep_rules: Collection[str]
) -> Iterator[tuple[list[str], list[str]]]:
    """(ids to delete, ids to redact) of each page of ``status`` messages created before
    the cutoff, in (due time, id) order; pages with nothing to change are skipped."""
    after = FIRST_PAGE
    while True:
        with ReadOnly(database) as read:
            page = read.retention.finished_page(status, cutoff_us, after=after, limit=batch_size)
        if not page:
            return
        after = (page[-1].due_us, page[-1].message_id)
        doomed = [row.message_id for row in page if row.rule not in keep_rules]
        kept = [
            row.message_id for row in page if row.rule in keep_rules and row.body not in REDACTED
        ]
        if doomed or kept:
            yield doomed, kept
