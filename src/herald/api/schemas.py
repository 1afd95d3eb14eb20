"""The HTTP contract: request and response bodies, kept apart from the tables."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
# A user id in a path, as events can carry one: U+0000 never is (no database stores it).
UserIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern="^[^\x00]+$")]


class EventIn(BaseModel):
    """One behavioural event, as the app sends it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "event_id": "evt_01HF3",
                "user_id": "u_12345",
                "event_type": "payment_failed",
                "event_timestamp": "2025-10-31T19:24:11Z",
                "properties": {
                    "amount": 1425.0,
                    "attempt_number": 2,
                    "failure_reason": "INSUFFICIENT_FUNDS",
                },
                "user_traits": {
                    "email": "maria@example.com",
                    "country": "PT",
                    "marketing_opt_in": True,
                },
            }
        }
    )

    event_id: NonEmpty | None = Field(None, description="Idempotency key; derived when absent")
    user_id: NonEmpty
    event_type: NonEmpty
    event_timestamp: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="ISO 8601; with an offset it is converted to UTC, without one it is UTC"
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    user_traits: dict[str, Any] = Field(default_factory=dict)


class BatchIn(BaseModel):
    events: list[Any] = Field(min_length=1, max_length=1000, description="up to 1,000 events")


class DecisionOut(BaseModel):
    rule: str
    rule_version: str
    outcome: Literal["triggered", "suppressed", "skipped"]
    reason: str
    message_id: str | None = None
    dedup_key: str | None = None


class EventAccepted(BaseModel):
    event_id: str
    status: Literal["accepted", "duplicate"]
    decisions: list[DecisionOut] = Field(default_factory=list)


class BatchItem(BaseModel):
    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    decisions: list[DecisionOut] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)


class BatchOut(BaseModel):
    results: list[BatchItem]


class PreferencesIn(BaseModel):
    unsubscribed: list[Literal["email", "sms", "marketing"]] = Field(
        description="Channels the user unsubscribed from; `marketing` for all marketing"
    )
