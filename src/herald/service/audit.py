"""The audit: what Herald knows about a user, every event with its decisions, every message."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from herald.domain.timeutil import from_micros, iso
from herald.service.preferences import as_shown
from herald.store.database import Database
from herald.store.outbox import SENDING
from herald.store.unit_of_work import ReadOnly

_INT64 = (-(2**63), 2**63)
# A page stops at this much stored JSON (after its first event), whatever its limit: a
# thousand events of up to 1 MiB each would otherwise be one answer of a gigabyte, built
# in the server's memory.
MAX_PAGE_BYTES = 16 * 1024 * 1024


class BadCursor(ValueError):
    """A page cursor that ``encode_cursor`` did not make for this user: a client's error."""


def encode_cursor(user_id: str, time_us: int, seq: int) -> str:
    """The cursor of ``user_id``'s page after an event at ``time_us`` (event time,
    microseconds) and ``seq`` (its arrival order): opaque to clients, read back by
    ``decode_cursor``."""
    return _text(time_us, seq, _owner(user_id))


def decode_cursor(cursor: str, user_id: str) -> tuple[int, int]:
    """The ``(time_us, seq)`` that ``encode_cursor`` made ``cursor`` of for ``user_id``;
    raises ``BadCursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        time_text, seq_text, owner = raw.split(":")
        time_us, seq = int(time_text), int(seq_text)
        if not _OWNER.fullmatch(owner):
            raise ValueError(owner)
    except (ValueError, UnicodeDecodeError):
        raise BadCursor(_INVALID) from None
    # Both decoders are lenient (base64 skips stray characters, int() takes spaces, signs
    # and underscores): only the very text encode_cursor writes is one, so an altered
    # cursor is refused rather than read as some other page.
    if _text(time_us, seq, owner) != cursor:
        raise BadCursor(_INVALID)
    if not all(_INT64[0] <= value < _INT64[1] for value in (time_us, seq)):
        raise BadCursor(_INVALID)  # no stored value lies out there
    # A position in one user's events means nothing in another's: read there, it would
    # be a page that silently skips the newer events.
    if owner != _owner(user_id):
        raise BadCursor(
            "this cursor is from another user's audit: pass the next_cursor of this "
            "user's previous page"
        )
    return time_us, seq


_OWNER = re.compile("[0-9a-f]{12}")
_INVALID = "invalid cursor: pass the next_cursor of the previous page as it was given"


def _text(time_us: int, seq: int, owner: str) -> str:
    return base64.urlsafe_b64encode(f"{time_us}:{seq}:{owner}".encode()).decode().rstrip("=")


def _owner(user_id: str) -> str:
    """Which user a cursor is for: a short digest of the id (not a secret; it catches a
    cursor passed to the wrong user's audit)."""
    return hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def _when(micros: int | None) -> str | None:
    return iso(from_micros(micros)) if micros is not None else None


def user_audit(
    database: Database, user_id: str, *, limit: int, cursor: str | None
) -> dict[str, Any] | None:
    """The audit page of ``user_id``: at most ``limit`` events (fewer once they hold
    ``MAX_PAGE_BYTES``), newest first, from ``cursor`` on (the first page when None),
    with the messages they explain; None for an unknown user. Raises ``BadCursor`` for a
    cursor Herald did not make."""
    with ReadOnly(database) as read:
        user = read.users.get_row(user_id)
        if user is None:
            return None
        # Read once the user is known: a mistyped id sent with the cursor of the user meant
        # was told the cursor was another user's, as if Herald knew the id.
        before = decode_cursor(cursor, user_id) if cursor else None
        page, more = read.events.page_for_user(
            user_id, limit=limit, before=before, max_bytes=MAX_PAGE_BYTES
        )
        messages = _messages_of(read, user, page, first_page=before is None)
        attempts = read.outbox.attempts_for([m.message_id for m in messages])
    return {
        "user": _user(user),
        "events": [_event(row) for row in page],
        "messages": [_message(m, attempts.get(m.message_id, [])) for m in messages],
        "next_cursor": encode_cursor(user_id, page[-1].event_time_us, page[-1].seq)
        if more
        else None,
    }


def _messages_of(read: ReadOnly, user: Any, page: list[Any], *, first_page: bool) -> list[Any]:
    """The messages the events of ``page`` explain or name, and on the first page those
    whose event was pruned."""
    # A message is about its trigger, but another event may have created it (the
    # signup that decides a bank link which came before it): the page lists both. A
    # suppression names the message holding its limit, made by an event on another page
    # perhaps: listed too, as whether it reached the user is what explains the silence.
    named = [
        decision["message_id"]
        for row in page
        for decision in row.decisions
        if "message_id" in decision and decision["outcome"] != "skipped"
    ]
    messages = read.outbox.for_events(user.user_id, [row.event_id for row in page], named)
    if first_page and user.pruned_before_us is not None:
        # Their events are gone, but the messages still explain something: one not yet
        # delivered, or the redacted one that holds a lifetime limit. One a suppression on
        # this page names is listed already: listed again, it read as two messages.
        listed = {message.message_id for message in messages}
        messages += [
            message
            for message in read.outbox.of_pruned_events(user.user_id)
            if message.message_id not in listed
        ]
    return messages


def _user(row: Any) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "traits": row.traits,
        "preferences": as_shown(row.preferences),
        "first_seen_at": _when(row.first_seen_us),
        "updated_at": _when(row.updated_us),
        "history_pruned_before": _when(row.pruned_before_us),
        "forgotten_at": _when(row.forgotten_us),
    }


def _event(row: Any) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "event_type": row.event_type,
        "event_timestamp": _when(row.event_time_us),
        "received_at": _when(row.received_us),
        "properties": row.properties,
        "user_traits": row.user_traits,
        "ruleset_version": row.ruleset_version,
        "decisions": row.decisions,
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
        # Still "sending" (its attempt goes on), but it will not be tried again: without
        # this, the audit showed a message its rule's cancel had reached as any other send.
        "cancel_requested": row.cancel_requested,
        # Who is sending it, and until when: a dispatcher killed mid-send leaves it
        # `sending` until its claim runs out, which the audit did not otherwise say.
        "claim": {"dispatcher": row.claimed_by, "until": _when(row.lease_until_us)}
        if row.status == SENDING and row.claimed_by is not None and row.lease_until_us is not None
        else None,
        "delivery_attempts": [
            {"attempt": a.attempt, "at": _when(a.at_us), "outcome": a.outcome, "detail": a.detail}
            for a in attempts
        ],
        "event_id": row.event_id,
    }
