"""The audit: what Herald knows about a user, every event with its decisions, every message."""

from __future__ import annotations

import base64
from typing import Any

from herald.domain.timeutil import from_micros, iso
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly

_INT64 = (-(2**63), 2**63)


class BadCursor(ValueError):
    pass


def encode_cursor(time_us: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{time_us}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        time_us, seq = (int(part) for part in raw.split(":"))
    except (ValueError, UnicodeDecodeError):
        raise BadCursor(f"invalid cursor {cursor!r}") from None
    if not all(_INT64[0] <= value < _INT64[1] for value in (time_us, seq)):
        raise BadCursor(f"invalid cursor {cursor!r}")  # no stored value lies out there
    return time_us, seq


def _when(micros: int | None) -> str | None:
    return iso(from_micros(micros)) if micros is not None else None


def user_audit(
    database: Database, user_id: str, *, limit: int, cursor: str | None
) -> dict[str, Any] | None:
    """The audit page of ``user_id``, newest events first, or None for an unknown user."""
    before = decode_cursor(cursor) if cursor else None
    with ReadOnly(database) as read:
        user = read.users.get_row(user_id)
        if user is None:
            return None
        rows = read.events.page_for_user(user_id, limit=limit + 1, before=before)
        page, more = rows[:limit], len(rows) > limit
        # A message is about its trigger, but another event may have created it (the
        # signup that decides a bank link which came before it): the page lists both.
        created = [
            decision["message_id"]
            for row in page
            for decision in row.decisions
            if decision["outcome"] == "triggered" and "message_id" in decision
        ]
        messages = read.outbox.for_events(user_id, [row.event_id for row in page], created)
        if before is None and user.pruned_before_us is not None:
            # Their events are gone, but the messages still explain something: one not yet
            # delivered, or the redacted one that holds a lifetime limit.
            messages += read.outbox.of_pruned_events(user_id)
        attempts = read.outbox.attempts_for([m.message_id for m in messages])
    return {
        "user": {
            "user_id": user.user_id,
            "traits": user.traits,
            "preferences": user.preferences or {},
            "first_seen_at": _when(user.first_seen_us),
            "updated_at": _when(user.updated_us),
            "history_pruned_before": _when(user.pruned_before_us),
        },
        "events": [
            {
                "event_id": row.event_id,
                "event_type": row.event_type,
                "event_timestamp": _when(row.event_time_us),
                "received_at": _when(row.received_us),
                "properties": row.properties,
                "user_traits": row.user_traits,
                "ruleset_version": row.ruleset_version,
                "decisions": row.decisions,
            }
            for row in page
        ],
        "messages": [_message(m, attempts.get(m.message_id, [])) for m in messages],
        "next_cursor": encode_cursor(page[-1].event_time_us, page[-1].seq) if more else None,
    }


def _message(row: Any, attempts: list[Any]) -> dict[str, Any]:
    return {
        "message_id": row.message_id,
        "rule": row.rule,
        "rule_version": row.rule_version,
        "channel": row.channel,
        "category": row.category,
        "status": row.status,
        "dedup_key": row.dedup_key,
        "recipient": row.recipient,
        "subject": row.subject,
        "body": row.body,
        "html": row.html,
        "created_at": _when(row.created_us),
        "due_at": _when(row.due_us),
        "sent_at": _when(row.sent_us),
        "hold_reason": row.hold_reason,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "delivery_attempts": [
            {"attempt": a.attempt, "at": _when(a.at_us), "outcome": a.outcome, "detail": a.detail}
            for a in attempts
        ],
        "event_id": row.event_id,
    }
