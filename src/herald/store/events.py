"""The event log: one row per accepted event, with the decisions made about it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from herald.domain.model import Event
from herald.domain.timeutil import from_micros
from herald.store.tables import events

_CHUNK = 500  # stays below SQLite's bound-parameter limit


class EventRepository:
    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def fingerprints(self, event_ids: Iterable[str]) -> dict[str, str]:
        """The stored fingerprint of each of ``event_ids`` that is already stored."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, str] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = self._conn.execute(
                select(events.c.event_id, events.c.fingerprint).where(events.c.event_id.in_(chunk))
            )
            found.update({row.event_id: row.fingerprint for row in rows})
        return found

    def in_window(self, user_id: str, event_type: str, start_us: int, end_us: int) -> list[Event]:
        """The user's events of a type with ``start_us <= event time <= end_us``."""
        rows = self._conn.execute(
            select(
                events.c.event_id,
                events.c.event_type,
                events.c.event_time_us,
                events.c.properties,
                events.c.user_traits,
            ).where(
                events.c.user_id == user_id,
                events.c.event_type == event_type,
                events.c.event_time_us.between(start_us, end_us),
            )
        )
        return [
            Event(
                row.event_id,
                user_id,
                row.event_type,
                from_micros(row.event_time_us),
                row.properties,
                row.user_traits,
            )
            for row in rows
        ]

    def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._conn.execute(events.insert(), list(rows))

    def page_for_user(
        self, user_id: str, *, limit: int, before: tuple[int, int] | None
    ) -> list[Any]:
        """The user's events newest first (event time, then arrival), after a cursor."""
        query = select(events).where(events.c.user_id == user_id)
        if before is not None:
            time_us, seq = before
            query = query.where(
                or_(
                    events.c.event_time_us < time_us,
                    and_(events.c.event_time_us == time_us, events.c.seq < seq),
                )
            )
        query = query.order_by(events.c.event_time_us.desc(), events.c.seq.desc()).limit(limit)
        return list(self._conn.execute(query))
