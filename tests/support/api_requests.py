"""What the API tests post, and the settings of a server guarded by tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from herald.config import Settings


def payment_failed(user: str = "u_1", **overrides: Any) -> dict[str, Any]:
    """A ``payment_failed`` event as the app posts it, its fields replaced by ``overrides``."""
    event = {
        "user_id": user,
        "event_type": "payment_failed",
        "event_timestamp": "2025-10-31T19:24:11Z",
        "properties": {
            "amount": 1425.0,
            "attempt_number": 2,
            "failure_reason": "INSUFFICIENT_FUNDS",
        },
        "user_traits": {"email": "maria@example.com", "country": "PT", "marketing_opt_in": True},
    }
    event.update(overrides)
    return event


ATTEMPT_3 = {"amount": 12.5, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"}


def signup(user: str = "u_1", opt_in: bool = True, **overrides: Any) -> dict[str, Any]:
    """A ``signup_completed`` event as the app posts it, its fields replaced by ``overrides``."""
    event = {
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": "2025-11-01T10:00:00Z",
        "user_traits": {"email": f"{user}@example.com", "marketing_opt_in": opt_in},
    }
    event.update(overrides)
    return event


def guarded(database_url: str, tmp_path: Path, **tokens: str) -> Settings:
    """Settings on the test database with the bearer ``tokens`` set (``admin_token``,
    ``ingest_token``)."""
    return Settings(database_url=database_url, outbox_file=str(tmp_path / "o.jsonl"), **tokens)


def payment_failed_by(user: str) -> dict[str, Any]:
    """A ``payment_failed`` event of ``user``, with an email of the user's own, that both
    rules on it decide: the event the fuzz tests vary."""
    return {
        "user_id": user,
        "event_type": "payment_failed",
        "event_timestamp": "2025-10-31T19:24:11Z",
        "properties": {"amount": 10.5, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"},
        "user_traits": {"email": f"{user}@example.com", "marketing_opt_in": True},
    }
