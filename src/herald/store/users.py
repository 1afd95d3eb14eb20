"""User profiles: traits merged from events, plus preferences set through the API."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from herald.domain.model import UserProfile
from herald.store.dialect import insert_for
from herald.store.tables import users


def profile_from_row(row: Any) -> UserProfile:
    traits = dict(row.traits)
    preferences = row.preferences or {}
    if preferences.get("unsubscribed"):
        # Unsubscribes set through the API reach the rules as the `unsubscribed` trait.
        traits["unsubscribed"] = sorted(preferences["unsubscribed"])
    return UserProfile(row.user_id, traits, dict(row.trait_times))


@functools.cache
def _upsert_profiles(dialect: str) -> Any:
    # Built once: constructing the statement cost more than running it.
    statement = insert_for(dialect, users)
    return statement.on_conflict_do_update(
        index_elements=[users.c.user_id],
        set_={
            "traits": statement.excluded.traits,
            "trait_times": statement.excluded.trait_times,
            "updated_us": statement.excluded.updated_us,
        },
    )


class UserRepository:
    def __init__(self, connection: Connection, dialect: str) -> None:
        self._conn = connection
        self._dialect = dialect

    def get_many(self, user_ids: Iterable[str]) -> dict[str, UserProfile]:
        ids = list(dict.fromkeys(user_ids))
        found: dict[str, UserProfile] = {}
        for start in range(0, len(ids), 500):
            rows = self._conn.execute(
                select(users).where(users.c.user_id.in_(ids[start : start + 500]))
            )
            found.update({row.user_id: profile_from_row(row) for row in rows})
        return found

    def get_row(self, user_id: str) -> Any | None:
        return self._conn.execute(select(users).where(users.c.user_id == user_id)).first()

    def upsert_many(self, profiles: Iterable[UserProfile], now_us: int) -> None:
        rows = [
            {
                "user_id": profile.user_id,
                "traits": {k: v for k, v in profile.traits.items() if k != "unsubscribed"},
                "trait_times": dict(profile.trait_times),
                "first_seen_us": now_us,
                "updated_us": now_us,
            }
            for profile in profiles
        ]
        if rows:
            self._conn.execute(_upsert_profiles(self._dialect), rows)

    def set_preferences(self, user_id: str, preferences: dict[str, Any], now_us: int) -> None:
        statement = insert_for(self._dialect, users).values(
            user_id=user_id,
            traits={},
            trait_times={},
            preferences=preferences,
            first_seen_us=now_us,
            updated_us=now_us,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[users.c.user_id],
            set_={"preferences": statement.excluded.preferences, "updated_us": now_us},
        )
        self._conn.execute(statement)
