"""The database schema (SQLAlchemy Core). Times are integer microseconds since the epoch, UTC.

Every query Herald makes on the hot path is by an indexed key: the event id, the user,
the message id (the digest of its dedup key), or the outbox's (status, due time).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from herald.domain.model import MAX_DEDUP_KEY, MAX_RECIPIENT

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("traits", JSON, nullable=False),
    Column("trait_times", JSON, nullable=False),  # trait -> event time (us) it came from
    Column("preferences", JSON, nullable=True),  # unsubscribes set through the API
    Column("first_seen_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("pruned_before_us", BigInteger, nullable=True),  # history older than this was pruned
    Column("forgotten_us", BigInteger, nullable=True),  # when last forgotten at their request
)

events = Table(
    "events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("fingerprint", String(32), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("event_time_us", BigInteger, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("user_traits", JSON, nullable=False),
    # Decisions are written with their event and never change: one row, one read.
    Column("decisions", JSON, nullable=False),
    Column("ruleset_version", String(32), nullable=False),
    # One index serves both a user's history windows and the audit's newest-first pages.
    Index("ix_events_user_time", "user_id", "event_time_us", "seq"),
    Index("ix_events_time", "event_time_us"),  # retention deletes by event time
)

messages = Table(
    "messages",
    metadata,
    # The id is the digest of the dedup key, so this key admits one message per dedup
    # key: it is what enforces limits (one index, not two, written per message).
    Column("message_id", String(64), primary_key=True),
    Column("dedup_key", String(MAX_DEDUP_KEY), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("rule", String(128), nullable=False),
    Column("rule_version", String(32), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("category", String(32), nullable=False),
    Column("recipient", String(MAX_RECIPIENT), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("html", Text, nullable=True),
    # pending -> sending -> sent | pending (retry) | failed (dead letter); pending or
    # failed -> cancelled when the user unsubscribes from marketing or an operator
    # cancels its rule (sending -> cancelled, unless sent, for that). A message held
    # for quiet hours is pending, due when they end, with its hold_reason.
    Column("status", String(16), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("due_us", BigInteger, nullable=False),
    Column("sent_us", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("hold_reason", Text, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until_us", BigInteger, nullable=True),
    # The reason of a rule's cancel asked while the message was being sent: its attempt,
    # unless sent, or its claim given back or run out, ends it cancelled, not pending.
    Column("cancel_requested", Text, nullable=True),
    Index("ix_messages_status_due", "status", "due_us"),
    Index("ix_messages_user", "user_id", "created_us"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("message_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("worker", String(64), nullable=False),
    Index("ix_attempts_message", "message_id", "attempt"),
)
