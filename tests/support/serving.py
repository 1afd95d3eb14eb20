"""What the tests of `herald serve` as an operator runs it share: a signup event, the
CLI's message unwrapped, and a SQLite file in the test's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def signup(user: str, email: str) -> dict[str, Any]:
    return {
        "event_id": f"evt_{user}_signup",
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": "2025-11-03T10:00:00Z",
        "user_traits": {"email": email, "marketing_opt_in": True},
    }


def one_line(text: str) -> str:
    """The CLI's message with any wrapping undone."""
    return " ".join(text.split())


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'herald.db'}"
