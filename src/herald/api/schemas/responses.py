"""What the API answers: each response body as a model that names every field it may
carry, and the error answers and headers the routes share in the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


# The answers are built by the routes and services, not validated on the way out (the
# ingestion routes return their JSON themselves); these models document them, and a test
# holds each one to what is really sent, so none may carry a field they do not name.
class _Answer(BaseModel):
    """A response body: it names every field it may carry."""

    model_config = ConfigDict(extra="forbid")


class ClientError(_Answer):
    detail: str = Field(description="What was wrong, in a sentence")


class FieldError(_Answer):
    loc: list[str | int] = Field(description='Where: ["body", "properties", "amount"]')
    msg: str
    type: str


class ValidationErrors(_Answer):
    detail: list[FieldError]


# The headers a 401 and a 503 carry, as the document declares them.
ASKS_FOR_BEARER: dict[str, Any] = {
    "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
}
RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying, when the database is what failed",
        "schema": {"type": "integer"},
    }
}
# Every answer carries one, made by the request edge (middleware.py), whatever the route.
REQUEST_ID: dict[str, Any] = {
    "description": "The request's X-Request-Id (its first 64 characters), else one Herald "
    "made; the JSON logs give it as `request_id` on the lines the request wrote",
    "required": True,
    "schema": {"type": "string"},
}

# Answers the admin routes share with the rest: made before the route runs (the token,
# the request edge) or for any query (the database).
ADMIN_UNAUTHORIZED: dict[str, Any] = {
    "model": ClientError,
    "description": "HERALD_ADMIN_TOKEN is set and the bearer token is missing or wrong",
    "headers": ASKS_FOR_BEARER,
}
# Answered by the request edge to any request with a body, on every route.
UNSUPPORTED_BODY: dict[str, Any] = {
    "model": ClientError,
    "description": "The body is compressed, not sent as application/json, or in another "
    "charset than UTF-8",
}
DATABASE_UNAVAILABLE: dict[str, Any] = {
    "model": ClientError,
    "description": "The database is unavailable: retry (after `Retry-After` seconds)",
    "headers": RETRY_AFTER,
}


# A field with a default is one an answer may leave out (optional in the document, where
# a generated client checks for it before each read); one it always sends has none. One
# it leaves out rather than sends null defaults to a None the document does not show.
class DecisionOut(_Answer):
    rule: str
    rule_version: str
    outcome: Literal["triggered", "suppressed", "skipped"]
    reason: str
    message_id: str | SkipJsonSchema[None] = None
    dedup_key: str | SkipJsonSchema[None] = None


class EventAccepted(_Answer):
    event_id: str
    status: Literal["accepted", "duplicate"]
    decisions: list[DecisionOut]


class BatchItem(_Answer):
    index: int
    event_id: str | None = Field(description="Null when a rejected event had no string id")
    status: Literal["accepted", "duplicate", "rejected"]
    decisions: list[DecisionOut]
    errors: list[FieldError] | SkipJsonSchema[None] = Field(None, description="Why, when rejected")


class BatchOut(_Answer):
    results: list[BatchItem]


class Preferences(_Answer):
    """A user's preferences, in this one shape whether or not any were ever set."""

    unsubscribed: list[str] = Field(
        description="The channels (`email`, `sms`) and `marketing` (all of them) the user "
        "unsubscribed from through POST /users/{id}/preferences, sorted; empty when none"
    )
    updated_at: str | None = Field(
        description="When they were last set through POST /users/{id}/preferences (UTC "
        "ISO 8601); null when never, or set before Herald kept the time"
    )
    unsubscribed_at: dict[str, str | None] = Field(
        description="When the user unsubscribed from each name of `unsubscribed` (UTC ISO "
        "8601): the request that first listed it, kept while later ones list it too. For a "
        "list set before Herald kept each name's time, when it was set; null when that is "
        "not known either"
    )


class PreferencesOut(_Answer):
    user_id: str
    preferences: Preferences = Field(description="As set")
    cancelled_messages: list[str] = Field(
        description="Ids of the user's marketing messages still waiting on those channels "
        "(held for quiet hours, a retry, a backlog, or a dead letter `herald messages retry` "
        "would re-queue): cancelled, never sent"
    )


class ForgottenOut(_Answer):
    user_id: str
    events_deleted: int = Field(description="The user's events, with their decisions")
    traits_deleted: int = Field(
        description="The names in the user's profile (email, phone, ...), with their values"
    )
    delivery_attempts_deleted: int = Field(
        description="Of the user's messages (a receiver's answer may quote them)"
    )
    messages_redacted: int = Field(
        description="Recipient and texts removed; the rows stay, holding the user's limits"
    )
    messages_cancelled: int = Field(description="Of those, the ones not sent yet: never sent")
    messages_in_flight: int = Field(
        description="Being sent now: cancelled when the attempt ends, unless sent. Its "
        "record is written then; forgetting the user again deletes it"
    )
    outbox_file_lines_deleted: int = Field(
        description="The user's sends removed from the stub provider's file (outbox.jsonl), "
        "which holds each in full: 0 without one"
    )


class ForgottenInDatabaseOnly(_Answer):
    detail: str = Field(
        description="That the user was forgotten in the database, and why their sends "
        "could not be removed from the stub provider's file (the path swapped for a FIFO "
        "or a folder since the server started): asked again once it is fixed, it removes them"
    )
    forgotten: ForgottenOut = Field(description="What the database's part did, committed")


class UserOut(_Answer):
    user_id: str
    traits: dict[str, Any] = Field(description="Merged from events; the latest event time wins")
    preferences: Preferences = Field(description="Set through POST /users/{id}/preferences")
    first_seen_at: str
    updated_at: str
    history_pruned_before: str | None = Field(
        description="Events before this were deleted: by a prune, or when the user was forgotten"
    )
    forgotten_at: str | None = Field(
        description="When the user was last forgotten at their request (DELETE /users/{id} or "
        "`herald users forget`): their events, traits and delivery attempts deleted, their "
        "messages redacted. Null when never"
    )


class AuditEventOut(_Answer):
    event_id: str
    event_type: str
    event_timestamp: str = Field(description="UTC, ISO 8601")
    received_at: str
    properties: dict[str, Any]
    user_traits: dict[str, Any]
    ruleset_version: str
    decisions: list[DecisionOut]


class DeliveryAttemptOut(_Answer):
    attempt: int
    at: str
    outcome: Literal["sent", "retry", "failed"]
    detail: str


class ClaimOut(_Answer):
    dispatcher: str = Field(
        description="The dispatcher that claimed it, as it names itself when it starts "
        "(`dispatcher vm:8073-804f2e193bb5 on ...`)"
    )
    until: str = Field(
        description="When its claim runs out (on PostgreSQL, by the database server's "
        "clock): a dispatcher that stopped or died mid-send leaves the message `sending` "
        "until then; another then takes it over, counting the attempt as interrupted"
    )


class MessageOut(_Answer):
    message_id: str
    rule: str
    rule_version: str
    channel: str
    category: str
    status: Literal["pending", "sending", "sent", "failed", "cancelled"]
    dedup_key: str
    recipient: str
    subject: str
    body: str
    html: str | None
    created_at: str
    due_at: str = Field(description="When it may be sent (later for a retry or quiet hours)")
    sent_at: str | None
    hold_reason: str | None = Field(
        description="Why it last waited without an attempt: quiet hours when it was "
        "created, its channel's rate limit or pause when put back, or a dead letter "
        "re-queued by `herald messages retry`. Kept once sent, as the reason a send came "
        "late, and once cancelled, as what it was waiting for: `status` says whether it "
        "still waits, and `last_error` why a cancelled one never will"
    )
    attempts: int
    last_error: str | None
    cancel_requested: str | None = Field(
        description="Set while it is being sent (`sending`) when `herald messages cancel "
        "--rule` cancelled its rule: the cancel's reason. When its attempt ends (or its "
        "claim is given back or runs out) it ends `cancelled`, with this as its "
        "`last_error`, and is not tried again, unless it was sent: a send that succeeds is "
        "beyond recall. Null otherwise"
    )
    claim: ClaimOut | None = Field(
        description="While it is being sent (`sending`): which dispatcher has it and until "
        "when. Null otherwise"
    )
    delivery_attempts: list[DeliveryAttemptOut]
    event_id: str


class AuditOut(_Answer):
    user: UserOut
    events: list[AuditEventOut] = Field(description="Newest first (event time)")
    messages: list[MessageOut] = Field(
        description="The messages this page's events created or are about, and those "
        "holding the limits their suppressions name"
    )
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class PropertyOut(_Answer):
    type: str
    required: bool
    minimum: float | None
    maximum: float | None
    enum: list[Any] | None


class EventTypeOut(_Answer):
    description: str
    properties: dict[str, PropertyOut]


class WindowOut(_Answer):
    event: str
    within: str = Field(description="As the rule file wrote it, e.g. 24h")
    within_seconds: float


class MaxAgeOut(_Answer):
    age: str = Field(description="As the rule file wrote it, e.g. 72h")
    age_seconds: float


class RuleOut(_Answer):
    id: str
    version: str
    description: str
    trigger: str
    when: str | None = Field(description="The CEL condition")
    after: WindowOut | None
    max_age: MaxAgeOut | None = Field(
        description="A trigger older than this when it is decided is skipped: its message "
        "would come too late"
    )
    channel: str
    category: str
    limit: str
    template: str | None


class RulesOut(_Answer):
    version: str = Field(description="A content hash of the rule file and its templates")
    source: str
    event_types: dict[str, EventTypeOut]
    traits: dict[str, str] = Field(
        description="The user traits the rule file declares (its `traits:`), each with its "
        "type (`string`, `number`, `integer`, `boolean`, `object` or `array`): what "
        "conditions and templates may read of a user. All are optional on an event"
    )
    rules: list[RuleOut]


class ReadinessOut(_Answer):
    """Ready: ``schema`` and ``rules`` say what is in force. Unavailable: ``database`` or
    ``schema`` says why."""

    model_config = ConfigDict(populate_by_name=True)

    status: Literal["ready", "unavailable"]
    schema_: str | None = Field(
        None, alias="schema", description="The schema revision, or how far behind it is"
    )
    rules: str | None = Field(None, description="The rule set's version, when ready")
    database: str | None = Field(None, description="Why the database is unavailable")
