"""Preferences a user sets through the API (unsubscribes), kept beside their traits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from herald.domain.timeutil import from_micros, iso, to_micros
from herald.store.database import Database
from herald.store.unit_of_work import UnitOfWork
from herald.store.users import preferences_set_us


def set_unsubscribes(
    database: Database, user_id: str, channels: Iterable[str], *, now: datetime
) -> tuple[dict[str, Any], list[str]]:
    """Replace the user's unsubscribes (creating the user if Herald has not seen them yet):
    marketing rules then skip them, transactional go on. The marketing messages already
    waiting for them on those channels (held for quiet hours, a retry, a backlog) are
    cancelled: an unsubscribe at 22:00 must not be answered by the nudge held until 08:00.
    Returns their preferences and the ids of the messages cancelled."""
    names = sorted(set(channels))
    preferences = {"unsubscribed": names}
    reach = None if "marketing" in names else names  # None: every channel
    with UnitOfWork(database) as uow:
        uow.lock([user_id])  # as ingestion does: one writer per user at a time
        uow.users.set_preferences(user_id, preferences, to_micros(now))
        cancelled = (
            uow.outbox.cancel_marketing(
                user_id,
                reach,
                reason=f"the user unsubscribed from {', '.join(names)} at {iso(now)}",
                now_us=to_micros(now),
            )
            if names
            else []
        )
        uow.commit()
    return {**preferences, "updated_at": iso(now)}, cancelled


def as_shown(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The user's preferences as the API shows them, ``{"unsubscribed": [...],
    "updated_at": ...}``, the list empty when none: a user an event created has none
    stored, and a client reading ``{}`` there but ``{"unsubscribed": []}`` after an empty
    unsubscribe would have two shapes of one meaning to handle. ``updated_at`` is when
    they were last set (UTC ISO 8601), null when never, or before Herald kept the time."""
    set_us = preferences_set_us(stored)
    return {
        "unsubscribed": list((stored or {}).get("unsubscribed") or []),
        "updated_at": None if set_us is None else iso(from_micros(set_us)),
    }
