"""User profiles: traits merged from events, plus preferences set through the API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from herald.domain.model import UserProfile
from herald.store.dialect import insert_for
from herald.store.sql import execute_many, json_text, json_value, marks, select_in
from herald.store.tables import users


def _profile(
    user_id: str,
    traits: dict[str, Any],
    times: dict[str, int],
    preferences: dict[str, Any] | None,
    pruned_before_us: int | None,
) -> UserProfile:
    if not preferences:  # most users: none set through the API
        return UserProfile(user_id, traits, times, pruned_before_us)
    unsubscribed = frozenset(preferences.get("unsubscribed") or ())
    return UserProfile(
        user_id,
        traits,
        times,
        pruned_before_us,
        unsubscribed,
        unsubscribed_times=unsubscribe_times(preferences),
    )


def preferences_set_us(preferences: dict[str, Any] | None) -> int | None:
    """When ``preferences``, as stored, were last set (microseconds since the epoch), or
    None: they are stored without it when set before Herald kept the time."""
    set_us = (preferences or {}).get("set_us")
    return set_us if type(set_us) is int else None


def unsubscribe_times(preferences: dict[str, Any] | None) -> dict[str, int]:
    """When each unsubscribe of ``preferences``, as stored, was made (microseconds), by
    name: its own time (``unsubscribed_us``, null when not known), or, in preferences
    stored before each name kept one, when they were last set (``set_us``), the time
    they then gave them all. A name whose time is not known is left out."""
    if not preferences:  # most users: read with every event of theirs
        return {}
    stored = preferences
    own = stored.get("unsubscribed_us")
    own = own if isinstance(own, dict) else {}
    set_us = preferences_set_us(stored)
    times = {}
    for name in stored.get("unsubscribed") or ():
        when = own.get(name, set_us) if isinstance(name, str) else None  # null: not known
        if type(when) is int:
            times[name] = when
    return times


class UserRepository:
    def __init__(self, connection: Connection, dialect: str) -> None:
        self._conn = connection
        self._dialect = dialect

    def get_many(self, user_ids: Iterable[str]) -> dict[str, UserProfile]:
        """The stored profiles of ``user_ids``, by id; a user Herald has not seen is absent."""
        query = (
            "SELECT user_id, traits, trait_times, preferences, pruned_before_us FROM users "
            "WHERE user_id IN ({})"
        )
        return {
            user_id: _profile(
                user_id, json_value(traits), json_value(times), json_value(prefs), pruned
            )
            for user_id, traits, times, prefs, pruned in select_in(
                self._conn, self._dialect, query, user_ids
            )
        }

    def forgotten_us(self, user_id: str) -> int | None:
        """When the user was last forgotten at their request (microseconds), or None."""
        query = select(users.c.forgotten_us).where(users.c.user_id == user_id)
        return self._conn.execute(query).scalar_one_or_none()

    def get_row(self, user_id: str) -> Any | None:
        """The user's row as stored (for the audit), or None."""
        return self._conn.execute(select(users).where(users.c.user_id == user_id)).first()

    def upsert_many(self, profiles: Iterable[UserProfile], now_us: int) -> None:
        """Store each profile's traits, replacing the user's; ``now_us`` (microseconds
        since the epoch) is when a new user was first seen and when each was updated.
        Preferences are left as they are. Staged in the unit of work: the caller commits."""
        rows = [
            (
                profile.user_id,
                json_text(profile.traits),
                json_text(profile.trait_times),
                now_us,
                now_us,
            )
            for profile in profiles
        ]
        if rows:
            execute_many(
                self._conn,
                "INSERT INTO users (user_id, traits, trait_times, first_seen_us, updated_us) "
                f"VALUES ({marks(self._dialect, 5)}) ON CONFLICT (user_id) DO UPDATE SET "
                "traits = excluded.traits, trait_times = excluded.trait_times, "
                "updated_us = excluded.updated_us",
                rows,
            )

    def set_preferences(self, user_id: str, preferences: dict[str, Any], now_us: int) -> None:
        """Replace the user's preferences (a user not seen yet is created with no traits)
        at ``now_us``, microseconds since the epoch, kept with them as ``set_us`` (in the
        preferences' JSON: it needs no column of its own), as are the times of each
        unsubscribe (``unsubscribed_us``) when ``preferences`` hold them. The caller
        commits."""
        statement = insert_for(self._dialect, users).values(
            user_id=user_id,
            traits={},
            trait_times={},
            preferences={**preferences, "set_us": now_us},
            first_seen_us=now_us,
            updated_us=now_us,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[users.c.user_id],
            set_={"preferences": statement.excluded.preferences, "updated_us": now_us},
        )
        self._conn.execute(statement)
