"""The outbox: messages stored in the transaction of the event that decided them, where
the limits are held (a message's id is its dedup key's digest); re-queued as dead
letters or cancelled by an unsubscribe or an operator. ``OutboxRepository`` also has the
dispatchers' claims (claims.py) and records (claim_outcomes.py), and the audit's and
metrics' reads (outbox_reads.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from operator import itemgetter
from typing import NamedTuple, TypedDict

from sqlalchemy import ColumnElement, Connection, Update, case, func, select, update

from herald.domain.model import message_id_for
from herald.store.claim_outcomes import AttemptRecord, OutboxClaimOutcomes
from herald.store.claims import INTERRUPTED, ClaimedMessage, OutboxClaims
from herald.store.message_status import CANCELLED, FAILED, PENDING, REDACTED, SENDING, SENT
from herald.store.outbox_reads import OutboxReads
from herald.store.sql import execute_many, marks, select_in
from herald.store.tables import messages

__all__ = [
    "CANCELLED",
    "FAILED",
    "INTERRUPTED",
    "PENDING",
    "REDACTED",
    "SENDING",
    "SENT",
    "AttemptRecord",
    "ClaimedMessage",
    "MessageRow",
    "OutboxRepository",
    "RuleCancel",
]


class RuleCancel(NamedTuple):
    """What ``cancel_rule`` did: messages cancelled, and messages being sent that their
    attempt ends cancelled unless it is sent."""

    cancelled: int
    in_flight: int


class MessageRow(TypedDict):
    """A new message as ``add_many`` stores it (the delivery columns start empty)."""

    message_id: str  # message_id_for(dedup_key): the primary key holds the limit
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
    status: str  # PENDING
    created_us: int
    due_us: int  # later than created_us when held for quiet hours
    attempts: int
    hold_reason: str | None


_MESSAGE_COLUMNS = (
    "message_id", "dedup_key", "user_id", "event_id", "rule", "rule_version", "channel",
    "category", "recipient", "subject", "body", "html", "status", "created_us", "due_us",
    "attempts", "hold_reason",
)  # fmt: skip
_message_values = itemgetter(*_MESSAGE_COLUMNS)  # in C: a batch runs it for every message


# A message redacted (by a prune, or by forgetting its user): a shell holding its limit,
# with no recipient or text to send.
_REDACTED = messages.c.body.in_(REDACTED)


class OutboxRepository(OutboxReads, OutboxClaims, OutboxClaimOutcomes):
    """Messages stored with their event, claimed and recorded by dispatchers, re-queued
    or cancelled; and, from ``OutboxReads``, read for the audit and the metrics."""

    def __init__(self, connection: Connection, dialect: str) -> None:
        self._conn = connection
        self._dialect = dialect

    def holders(self, dedup_keys: Iterable[str]) -> dict[str, str]:
        """Dedup key -> id of the message that holds it, for keys already held."""
        key_of = {message_id_for(key): key for key in dedup_keys}
        query = "SELECT message_id FROM messages WHERE message_id IN ({})"
        found = select_in(self._conn, self._dialect, query, key_of)
        return {key_of[message_id]: message_id for (message_id,) in found}

    def add_many(self, rows: Sequence[MessageRow]) -> int:
        """Insert messages; a row whose dedup key is taken is not inserted (the database,
        not the caller, has the last word on limits). Returns how many were inserted.

        The primary key enforces the limit because a message id is the digest of its
        dedup key: a row whose id is not is refused, before anything is written."""
        if not rows:
            return 0
        for row in rows:
            if row["message_id"] != message_id_for(row["dedup_key"]):
                raise ValueError(
                    f"message {row['message_id']!r} is not named after its dedup key "
                    f"{row['dedup_key']!r}: its limit would not hold"
                )
        return execute_many(
            self._conn,
            f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "
            f"VALUES ({marks(self._dialect, len(_MESSAGE_COLUMNS))}) "
            "ON CONFLICT (message_id) DO NOTHING",
            [_message_values(row) for row in rows],
        )

    def requeue(
        self, *, now_us: int, message_id: str | None = None, reason: str | None = None
    ) -> int:
        """Put dead letters (all, or one) back in the queue, due now, with as many attempts
        ahead of them as a new message (those made stay in the attempts' history), and
        ``reason`` as their ``hold_reason``, when given. Returns how many."""
        # A dead letter a prune redacted is a shell (no recipient, no text): it stays.
        statement = update(messages).where(messages.c.status == FAILED, ~_REDACTED)
        if message_id is not None:
            statement = statement.where(messages.c.message_id == message_id)
        values: dict[str, object] = {
            "status": PENDING,
            "due_us": now_us,
            "last_error": None,
            "attempts": 0,
        }
        if reason is not None:
            values["hold_reason"] = reason
        result = self._conn.execute(statement.values(values))
        return int(result.rowcount)

    def count_redacted_dead_letters(self) -> int:
        """Dead letters a prune redacted, which ``requeue`` leaves."""
        query = select(func.count()).where(messages.c.status == FAILED, _REDACTED)
        return int(self._conn.execute(query).scalar_one())

    def cancel_rule(self, rule: str, *, reason: str, now_us: int) -> RuleCancel:
        """Cancel the messages of ``rule`` still waiting to be claimed (pending: due, held
        for quiet hours, or waiting for a retry) and its dead letters, with ``reason`` as
        their error; and mark those being sent, whose attempt (unless it is sent) or claim
        given back or run out then ends them cancelled with ``reason``. How many of each.

        One statement: taken apart, a message moving between waiting and being sent
        (claimed, or its retry recorded) between the two could escape both."""
        ended = end_waiting(
            self._conn, (messages.c.rule == rule, ~_REDACTED), reason=reason, now_us=now_us
        )
        return RuleCancel(cancelled=ended[CANCELLED], in_flight=ended[SENDING])

    def has_rule(self, rule: str) -> bool:
        """Whether any message of ``rule`` is stored, whatever its status. No index serves
        it: asked only of a cancel that found nothing, where it tells a rule id typed wrong
        from a rule whose messages have all gone."""
        query = select(messages.c.message_id).where(messages.c.rule == rule).limit(1)
        return self._conn.execute(query).first() is not None

    def cancellable_by_rule(self) -> dict[str, int]:
        """How many messages ``cancel_rule`` would cancel, for each rule that has any: a
        rule id typed wrong cancels nothing, and these are the ids it may have meant."""
        query = (
            select(messages.c.rule, func.count())
            .where(messages.c.status.in_([PENDING, FAILED]), ~_REDACTED)
            .group_by(messages.c.rule)
        )
        return {row[0]: int(row[1]) for row in self._conn.execute(query)}

    def cancel_marketing(
        self, user_id: str, channels: Collection[str] | None, *, reason: str, now_us: int
    ) -> list[str]:
        """Cancel the user's marketing messages still waiting to be claimed (pending: due,
        held for quiet hours, or waiting for a retry) on ``channels`` (None: every one);
        their ids. One being sent is beyond recall. A dead letter is waiting too: left
        failed, ``requeue`` would send it to the user who unsubscribed; not one a prune
        redacted, which ``requeue`` leaves: it waits for nothing, and the answer named it
        as cancelled."""
        statement = update(messages).where(
            messages.c.user_id == user_id, messages.c.category == "marketing", ~_REDACTED
        )
        if channels is not None:
            statement = statement.where(messages.c.channel.in_(sorted(channels)))
        result = self._conn.execute(
            _cancelling(statement, reason, now_us).returning(messages.c.message_id)
        )
        return sorted(row[0] for row in result)


def end_waiting(
    conn: Connection,
    where: Iterable[ColumnElement[bool]],
    *,
    reason: str,
    now_us: int,
    clear_in_flight_errors: bool = False,
) -> Counter[str]:
    """Cancel the messages ``where`` selects that wait to be claimed (pending) or are dead
    letters, with ``reason``, and mark those being sent to end cancelled with it when
    their attempt ends, unless sent; how many of each, by status (cancelled, sending).
    ``clear_in_flight_errors``: also clear the last error of those being sent. One
    statement, for the reason ``OutboxRepository.cancel_rule`` gives."""
    in_flight = messages.c.status == SENDING
    statement = (
        update(messages)
        .where(*where, messages.c.status.in_([PENDING, FAILED, SENDING]))
        .values(
            status=case((in_flight, SENDING), else_=CANCELLED),
            cancel_requested=case((in_flight, reason), else_=None),
            last_error=case(
                (in_flight, None if clear_in_flight_errors else messages.c.last_error),
                else_=reason,
            ),
            sent_us=case((in_flight, messages.c.sent_us), else_=None),
            due_us=case((in_flight, messages.c.due_us), else_=now_us),
        )
        .returning(messages.c.status)
    )
    return Counter(status for (status,) in conn.execute(statement))


def _cancelling(statement: Update, reason: str, now_us: int) -> Update:
    """``statement``, an update of messages, cancelling those it selects that wait to be
    claimed (pending) or are dead letters, with ``reason`` as their error. One being sent
    is beyond recall."""
    return statement.where(messages.c.status.in_([PENDING, FAILED])).values(
        status=CANCELLED, last_error=reason, sent_us=None, due_us=now_us
    )
