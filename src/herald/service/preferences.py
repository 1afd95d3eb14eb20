"""Preferences a user sets through the API (unsubscribes), kept beside their traits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from herald.domain.timeutil import to_micros
from herald.store.database import Database
from herald.store.unit_of_work import UnitOfWork


def set_unsubscribes(
    database: Database, user_id: str, channels: Iterable[str], *, now: datetime
) -> dict[str, Any]:
    """Replace the user's unsubscribes (creating the user if Herald has not seen them yet)
    and return their preferences. Marketing rules then skip them; transactional go on."""
    preferences = {"unsubscribed": sorted(set(channels))}
    with UnitOfWork(database) as uow:
        uow.lock([user_id])  # as ingestion does: one writer per user at a time
        uow.users.set_preferences(user_id, preferences, to_micros(now))
        uow.commit()
    return preferences
