"""The event log: one row per accepted event, with the decisions made about it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, Connection, LargeBinary, Text, and_, cast, func, or_, select

from herald.domain.model import Event
from herald.domain.timeutil import from_micros
from herald.store.sql import execute_many, fetch_all, json_text, json_value, marks, select_in
from herald.store.tables import events


class EventRow(TypedDict):
    """An event as ``add_many`` stores it, the JSON columns as Python values."""

    event_id: str
    fingerprint: str  # of the payload, to tell a retry from another use of the id
    user_id: str
    event_type: str
    event_time_us: int
    received_us: int
    ruleset_version: str
    properties: dict[str, Any]
    user_traits: dict[str, Any]
    decisions: list[dict[str, Any]]  # as the audit shows them


_PLAIN = (
    "event_id", "fingerprint", "user_id", "event_type", "event_time_us", "received_us",
    "ruleset_version",
)  # fmt: skip
_JSON = ("properties", "user_traits", "decisions")
_COLUMNS = _PLAIN + _JSON
# A row's values in column order, picked in C: a batch runs this for every event.
_plain_values = itemgetter(*_PLAIN)
_json_values = itemgetter(*_JSON)


class EventRepository:
    def __init__(self, connection: Connection, dialect: str) -> None:
        self._conn = connection
        self._dialect = dialect

    def fingerprints(self, event_ids: Iterable[str]) -> dict[str, str]:
        """The stored fingerprint of each of ``event_ids`` that is already stored."""
        query = "SELECT event_id, fingerprint FROM events WHERE event_id IN ({})"
        return dict(iter(select_in(self._conn, self._dialect, query, event_ids)))

    def decisions_of(self, event_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The decisions stored with each of ``event_ids`` that is stored, as the audit
        shows them."""
        query = "SELECT event_id, decisions FROM events WHERE event_id IN ({})"
        rows = select_in(self._conn, self._dialect, query, event_ids)
        return {event_id: json_value(decisions) for event_id, decisions in rows}

    def in_window(
        self,
        user_id: str,
        event_type: str,
        start_us: int,
        end_us: int,
        *,
        earliest: int | None = None,
        latest: int | None = None,
    ) -> list[Event]:
        """The user's events of a type with ``start_us <= event time <= end_us``, oldest
        first; only the ``earliest`` of them, or the ``latest`` (newest first), if given."""
        mark = marks(self._dialect, 1)
        order = " ORDER BY event_time_us DESC" if latest is not None else " ORDER BY event_time_us"
        count = latest if latest is not None else earliest
        limit = f" LIMIT {int(count)}" if count is not None else ""
        rows = fetch_all(
            self._conn,
            "SELECT event_id, event_time_us, properties, user_traits FROM events "
            f"WHERE user_id = {mark} AND event_type = {mark} "
            f"AND event_time_us >= {mark} AND event_time_us <= {mark}{order}{limit}",
            (user_id, event_type, start_us, end_us),
        )
        return [
            Event(
                event_id,
                user_id,
                event_type,
                from_micros(time_us),
                json_value(properties),
                json_value(traits),
            )
            for event_id, time_us, properties, traits in rows
        ]

    def add_many(self, rows: Sequence[EventRow]) -> None:
        """Insert events."""
        if not rows:
            return
        execute_many(
            self._conn,
            f"INSERT INTO events ({', '.join(_COLUMNS)}) "
            f"VALUES ({marks(self._dialect, len(_COLUMNS))})",
            [
                (*_plain_values(row), *map(json_text, _json_values(row)))  # as _COLUMNS
                for row in rows
            ],
        )

    def page_for_user(
        self, user_id: str, *, limit: int, before: tuple[int, int] | None, max_bytes: int
    ) -> tuple[list[Any], bool]:
        """(the user's events, newest first (event time, then arrival), at most ``limit``
        and, past the first, no more than ``max_bytes`` of stored JSON; whether more
        follow). With ``before``, the (event time, seq) of the previous page's last
        event, those after it in that order."""
        json_columns = (events.c.properties, events.c.user_traits, events.c.decisions)
        lengths = [self._stored_bytes(column) for column in json_columns]
        stored_bytes = lengths[0] + lengths[1] + lengths[2]
        query = select(events, stored_bytes.label("stored_bytes")).where(
            events.c.user_id == user_id
        )
        if before is not None:
            time_us, seq = before
            query = query.where(
                or_(
                    events.c.event_time_us < time_us,
                    and_(events.c.event_time_us == time_us, events.c.seq < seq),
                )
            )
        query = query.order_by(events.c.event_time_us.desc(), events.c.seq.desc()).limit(limit + 1)
        page: list[Any] = []
        size = 0
        # Rows are taken one at a time, so that a page of large events stops being read
        # (on SQLite, fetched) once it is full.
        for row in self._conn.execute(query):
            size += row.stored_bytes
            if len(page) == limit or (page and size > max_bytes):
                return page, True
            page.append(row)
        return page, False

    def _stored_bytes(self, column: ColumnElement[Any]) -> ColumnElement[int]:
        """The bytes of ``column``'s JSON as stored (UTF-8): ``length`` of text counts
        characters, and a page of text beyond ASCII held up to four times its bound."""
        text = cast(column, Text)
        if self._dialect == "postgresql":
            return func.octet_length(text)
        return func.length(cast(text, LargeBinary))  # SQLite: a blob's length is its bytes
