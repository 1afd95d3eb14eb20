"""The HTTP contract: request and response bodies, kept apart from the tables."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, with_config
from typing_extensions import TypedDict

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# A user id in a path, as events can carry one: U+0000 never is (no database stores it).
UserIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern="^[^\x00]+$")]


# A TypedDict, not a model: the endpoints want the plain dict, and validating straight
# into one skips building a model and dumping it again (a tenth of the work of a batch).
@with_config(
    ConfigDict(
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
)
class EventIn(TypedDict):
    """One behavioural event, as the app sends it."""

    event_id: NotRequired[
        Annotated[NonEmpty | None, Field(description="Idempotency key; derived when absent")]
    ]
    user_id: NonEmpty
    event_type: NonEmpty
    event_timestamp: Annotated[
        str,
        StringConstraints(min_length=1, max_length=64),
        Field(description="ISO 8601; with an offset it is converted to UTC, without one it is UTC"),
    ]
    properties: NotRequired[dict[str, Any]]
    user_traits: NotRequired[dict[str, Any]]


MAX_BATCH = 1000


class BatchIn(TypedDict):
    events: Annotated[
        list[EventIn], Field(min_length=1, max_length=MAX_BATCH, description="up to 1,000 events")
    ]


class LooseBatchIn(TypedDict):
    """A batch whose events are not checked yet: each is then accepted or rejected alone."""

    events: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH)]


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
