"""Preferences a user sets through the API (unsubscribes), kept beside their traits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import groupby
from typing import Any

from herald.domain.model import UserProfile
from herald.domain.timeutil import from_micros, iso, to_micros
from herald.store.database import Database
from herald.store.unit_of_work import UnitOfWork
from herald.store.users import preferences_set_us, unsubscribe_times


def set_unsubscribes(
    database: Database, user_id: str, channels: Iterable[str], *, now: datetime
) -> tuple[dict[str, Any], list[str]]:
    """Replace the user's unsubscribes (creating the user if Herald has not seen them yet):
    marketing rules then skip them, transactional go on. The marketing messages already
    waiting for them on those channels (held for quiet hours, a retry, a backlog) are
    cancelled: an unsubscribe at 22:00 must not be answered by the nudge held until 08:00.
    Each unsubscribe keeps the time it was made: one the user had already keeps its own.
    Returns their preferences, as ``as_shown`` gives them, and the ids of the messages
    cancelled."""
    names = sorted(set(channels))
    return _unsubscribe(database, user_id, lambda _before: names, names, now=now, how="")


def add_unsubscribes(
    database: Database, user_id: str, channels: Iterable[str], *, now: datetime, how: str
) -> tuple[dict[str, Any], list[str]]:
    """Add ``channels`` to the user's unsubscribes (creating the user if Herald has not
    seen them yet), keeping those they have with the times they were made: a click on a
    link in one email must not undo an unsubscribe made through the API, as replacing the
    list would. Their marketing messages waiting on those channels are cancelled, the
    reason saying ``how`` the user unsubscribed. Returns what ``set_unsubscribes``
    returns."""
    added = sorted(set(channels))

    def with_added(before: UserProfile | None) -> list[str]:
        return sorted(set(before.unsubscribed if before is not None else ()) | set(added))

    return _unsubscribe(database, user_id, with_added, added, now=now, how=f" {how}")


def _unsubscribe(
    database: Database,
    user_id: str,
    names_of: Callable[[UserProfile | None], list[str]],
    closing: list[str],
    *,
    now: datetime,
    how: str,
) -> tuple[dict[str, Any], list[str]]:
    """Store the user's unsubscribes, ``names_of`` their profile as stored (None for a
    user not seen yet), each with the time it was made, and cancel their marketing
    waiting on the channels of ``closing`` (all of them for ``marketing``), the reason
    ending with ``how``."""
    now_us = to_micros(now)
    with UnitOfWork(database) as uow:
        # Read and written under the user's lock, as ingestion writes: two unsubscribes at
        # once (a mail client's one-click POST beside the page's button) lose neither.
        uow.lock([user_id])
        before = uow.users.get_many([user_id]).get(user_id)
        names = names_of(before)
        times = _times_made(names, before, now_us)
        preferences = {"unsubscribed": names, "unsubscribed_us": times}
        uow.users.set_preferences(user_id, preferences, now_us)
        cancelled = []
        if closing:
            made = {name: times[name] for name in closing}
            cancelled = uow.outbox.cancel_marketing(
                user_id,
                None if "marketing" in closing else closing,  # None: every channel
                reason=f"the user unsubscribed from {_with_times(made)}{how}",
                now_us=now_us,
            )
        uow.commit()
    return as_shown({**preferences, "set_us": now_us}), cancelled


def _times_made(names: list[str], before: UserProfile | None, now_us: int) -> dict[str, int | None]:
    """When each of ``names`` was unsubscribed from, by name: now for a new one, and for
    one the user had already, the time it was made (None when Herald did not keep it).
    Setting the list again must not move an earlier unsubscribe to now."""
    if before is None:
        return dict.fromkeys(names, now_us)
    return {
        name: before.unsubscribed_times.get(name) if name in before.unsubscribed else now_us
        for name in names
    }


def _with_times(times: dict[str, int | None]) -> str:
    """``email, sms at <time>``, or ``email at <time>, sms at <later>`` when they were
    made apart; a name whose time is not known, last and without one."""

    def made(name: str) -> tuple[bool, int, str]:
        when = times[name]
        return when is None, when or 0, name

    said = []
    for when, group in groupby(sorted(times, key=made), key=times.__getitem__):
        at = "" if when is None else f" at {iso(from_micros(when))}"
        said.append(", ".join(group) + at)
    return ", ".join(said)


def as_shown(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The user's preferences as the API shows them, ``{"unsubscribed": [...],
    "updated_at": ..., "unsubscribed_at": {...}}``, the list empty when none: a user an
    event created has none stored, and a client reading ``{}`` there but
    ``{"unsubscribed": []}`` after an empty unsubscribe would have two shapes of one
    meaning to handle. ``updated_at`` is when they were last set (UTC ISO 8601), null
    when never, or before Herald kept the time; ``unsubscribed_at`` when each name of the
    list was unsubscribed from, null where not known."""
    set_us = preferences_set_us(stored)
    unsubscribed = list((stored or {}).get("unsubscribed") or [])
    times = unsubscribe_times(stored)
    return {
        "unsubscribed": unsubscribed,
        "updated_at": None if set_us is None else iso(from_micros(set_us)),
        "unsubscribed_at": {
            name: iso(from_micros(times[name])) if name in times else None for name in unsubscribed
        },
    }
