"""Forgetting a user: their events, traits and delivery attempts deleted, their messages'
recipients and texts redacted. The message rows stay, without personal data, because
they hold the user's limits: deleted, a replayed signup would send a second welcome
email. The policy and the transaction are the service's (service/erasure.py)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, Select, case, delete, func, select, update

from herald.store.message_status import CANCELLED, FAILED, FORGOTTEN, PENDING, REDACTED, SENDING
from herald.store.outbox import end_waiting
from herald.store.tables import delivery_attempts, events, messages, users

_WAITING = (PENDING, FAILED)  # due, held, waiting for a retry, or a dead letter


class Forgotten(NamedTuple):
    """What forgetting a user did, or would do."""

    events: int  # deleted
    messages: int  # redacted
    cancelled: int  # of those, waiting to be sent (or dead letters): cancelled
    in_flight: int  # of those, being sent: cancelled when the attempt ends, unless sent
    attempts: int  # delivery attempts deleted
    traits: int = 0  # names in the user's profile deleted, with their values
    outbox_lines: int = 0  # the user's sends removed from the stub provider's file


class ErasureRepository:
    """Forgetting a user on one connection, in its transaction; never commits."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def exists(self, user_id: str) -> bool:
        query = select(users.c.user_id).where(users.c.user_id == user_id)
        return self._conn.execute(query).first() is not None

    def forget(self, user_id: str, *, reason: str, now_us: int) -> Forgotten:
        """Delete the user's events, traits and delivery attempts, and redact their
        messages: those waiting to be sent are cancelled with ``reason``, those being
        sent marked to end cancelled, unless sent. The user's history is fenced after
        their latest event and ``now_us``: an event of theirs sent again is stored, but
        every rule skips it. Their unsubscribes stay, so that they are still honoured."""
        latest = self._conn.execute(
            select(func.max(events.c.event_time_us)).where(events.c.user_id == user_id)
        ).scalar_one()
        fence = max(now_us, (latest or now_us) + 1)
        traits = self._trait_count(user_id)
        attempts = self._conn.execute(
            delete(delivery_attempts).where(
                delivery_attempts.c.message_id.in_(_messages_of(user_id))
            )
        ).rowcount
        # A receiver's answer to an earlier attempt may quote the user: cleared too.
        ended = end_waiting(
            self._conn,
            (messages.c.user_id == user_id,),
            reason=reason,
            now_us=now_us,
            clear_in_flight_errors=True,
        )
        redacted = self._conn.execute(
            update(messages)
            .where(messages.c.user_id == user_id, messages.c.body.not_in(REDACTED))
            .values(subject="", body=FORGOTTEN, html=None, recipient="", hold_reason=None)
        ).rowcount
        deleted = self._conn.execute(delete(events).where(events.c.user_id == user_id)).rowcount
        self._conn.execute(
            update(users)
            .where(users.c.user_id == user_id)
            .values(
                traits={},
                trait_times={},
                updated_us=now_us,
                forgotten_us=now_us,
                pruned_before_us=case(
                    (users.c.pruned_before_us > fence, users.c.pruned_before_us), else_=fence
                ),
            )
        )
        return Forgotten(
            int(deleted), int(redacted), ended[CANCELLED], ended[SENDING], int(attempts), traits
        )

    def count(self, user_id: str) -> Forgotten:
        """What ``forget`` would do now, changing nothing."""
        c = messages.c
        redactable, waiting, in_flight = self._conn.execute(
            select(
                func.count().filter(c.body.not_in(REDACTED)),
                func.count().filter(c.status.in_(_WAITING)),
                func.count().filter(c.status == SENDING),
            ).where(c.user_id == user_id)
        ).one()
        counts = (
            select(func.count()).where(events.c.user_id == user_id),
            select(func.count()).where(delivery_attempts.c.message_id.in_(_messages_of(user_id))),
        )
        stored, attempts = (int(self._conn.execute(query).scalar_one()) for query in counts)
        return Forgotten(
            stored,
            int(redactable),
            int(waiting),
            int(in_flight),
            attempts,
            self._trait_count(user_id),
        )

    def _trait_count(self, user_id: str) -> int:
        traits = self._conn.execute(
            select(users.c.traits).where(users.c.user_id == user_id)
        ).scalar_one_or_none()
        return len(traits or {})


def _messages_of(user_id: str) -> Select[tuple[str]]:
    return select(messages.c.message_id).where(messages.c.user_id == user_id)
