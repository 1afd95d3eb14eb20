"""What is read of the outbox for the audit, the metrics and the operator: a user's
messages with their attempts, the backlog, the count of each status, the dead letters.
The writes, and the dispatchers' claims and records, are ``OutboxRepository``'s
(outbox.py), which has these too."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, exists, func, or_, select

from herald.store.message_status import FAILED, OPEN, PENDING, SENDING
from herald.store.tables import delivery_attempts, events, messages


class OutboxReads:
    _conn: Connection

    def for_events(
        self, user_id: str, event_ids: Sequence[str], message_ids: Sequence[str] = ()
    ) -> list[Any]:
        """The user's messages about ``event_ids`` (their trigger) or among
        ``message_ids``, newest first."""
        if not event_ids and not message_ids:
            return []
        about = messages.c.event_id.in_(list(event_ids))
        named = messages.c.message_id.in_(list(message_ids))
        return list(
            self._conn.execute(
                select(messages)
                .where(messages.c.user_id == user_id, or_(about, named))
                .order_by(messages.c.created_us.desc())
            )
        )

    def of_pruned_events(self, user_id: str) -> list[Any]:
        """The user's messages whose event was pruned (kept because undelivered, or
        redacted because a lifetime limit still needs them), newest first."""
        event_gone = ~exists().where(events.c.event_id == messages.c.event_id)
        return list(
            self._conn.execute(
                select(messages)
                .where(messages.c.user_id == user_id, event_gone)
                .order_by(messages.c.created_us.desc())
            )
        )

    def get(self, message_id: str) -> Any | None:
        """The message's row as stored, or None."""
        return self._conn.execute(
            select(messages).where(messages.c.message_id == message_id)
        ).first()

    def attempts_for(self, message_ids: Sequence[str]) -> dict[str, list[Any]]:
        """The delivery attempts of each of ``message_ids`` that has any, in the order
        they were made."""
        found: dict[str, list[Any]] = {}
        if not message_ids:
            return found
        rows = self._conn.execute(
            select(delivery_attempts)
            .where(delivery_attempts.c.message_id.in_(list(message_ids)))
            .order_by(delivery_attempts.c.message_id, delivery_attempts.c.attempt)
        )
        for row in rows:
            found.setdefault(row.message_id, []).append(row)
        # In the order they were made: a re-queued dead letter numbers its attempts from 1
        # again, and by number they would interleave with the earlier ones. Sorted here, a
        # few rows per message, rather than by a sort of every match in the database.
        for made in found.values():
            made.sort(key=attrgetter("id"))
        return found

    def backlog(self, now_us: int) -> tuple[int, int]:
        """(messages waiting to be sent, pending or being sent; how long, in microseconds,
        the oldest one due has waited, 0 when none is due yet)."""
        count, oldest = self._conn.execute(
            select(func.count(), func.min(messages.c.due_us)).where(
                messages.c.status.in_([PENDING, SENDING])
            )
        ).one()
        return int(count), (now_us - oldest) if oldest is not None and oldest <= now_us else 0

    def waiting_by_rule(self, *, except_rules: Collection[str]) -> dict[str, int]:
        """How many messages are waiting to be sent (pending or being sent) for each rule
        not among ``except_rules``."""
        query = (
            select(messages.c.rule, func.count())
            .where(
                messages.c.status.in_([PENDING, SENDING]),
                messages.c.rule.not_in(sorted(except_rules)),
            )
            .group_by(messages.c.rule)
        )
        return {row[0]: int(row[1]) for row in self._conn.execute(query)}

    def dead_letters(self, limit: int) -> tuple[int, list[Any]]:
        """(how many dead letters there are; the newest ``limit`` of them, newest first,
        by the time of their last attempt). Those a prune redacted are among them."""
        dead = messages.c.status == FAILED
        count = self._conn.execute(select(func.count()).where(dead)).scalar_one()
        last_attempt = (
            select(func.max(delivery_attempts.c.at_us))
            .where(delivery_attempts.c.message_id == messages.c.message_id)
            .scalar_subquery()
        )
        rows = self._conn.execute(
            select(messages, last_attempt.label("failed_us"))
            .where(dead)
            .order_by(last_attempt.desc().nulls_last(), messages.c.created_us.desc())
            .limit(limit)
        )
        return int(count), list(rows)

    def count_by_status(self, *, open_only: bool = False) -> dict[str, int]:
        """Messages per status that any message has. ``open_only`` counts only pending,
        sending and failed ones, leaving out ``sent`` and ``cancelled``, the statuses that
        grow with history, so the count stays cheap however long Herald runs."""
        query = select(messages.c.status, func.count()).group_by(messages.c.status)
        if open_only:
            query = query.where(messages.c.status.in_(OPEN))
        return {row[0]: int(row[1]) for row in self._conn.execute(query)}
