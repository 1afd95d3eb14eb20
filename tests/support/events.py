"""Events for tests: domain events for those that drive the store or the writer directly,
JSON payloads for those that post them."""

from __future__ import annotations

from typing import Any

from herald.domain.model import Event
from herald.domain.timeutil import parse_timestamp


def opted_in_signup(user: str) -> Event:
    """A signup that earns ``user`` a welcome email (event id ``s-<user>``)."""
    return Event(
        f"s-{user}",
        user,
        "signup_completed",
        parse_timestamp("2025-11-03T10:00:00Z"),
        {},
        {"email": f"{user}@example.com", "marketing_opt_in": True},
    )


def signup_payload(user: str) -> dict[str, Any]:
    """``opted_in_signup`` as a client posts it, without an event id."""
    return {
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": "2025-11-03T10:00:00Z",
        "user_traits": {"email": f"{user}@example.com", "marketing_opt_in": True},
    }
