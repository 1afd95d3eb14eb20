"""Domain events for tests that drive the store or the writer directly."""

from __future__ import annotations

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
