"""What requests carry: events and batches as the app sends them, the preferences an
admin sets, the ids a path may hold, and how large a body may be."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from herald.domain.timeutil import TIMESTAMP_PATTERN
from herald.service.intake import ID_PATTERN

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# A user or event id: the pattern only tells the document's readers what intake accepts;
# intake checks it (id_problem), with a message that says what is wrong.
Id = Annotated[NonEmpty, Field(json_schema_extra={"pattern": ID_PATTERN})]


def _storable_id(value: str) -> str:
    # Said as an event's id is told, rather than as the pattern that would check it.
    if "\x00" in value:
        raise PydanticCustomError(
            "invalid_id", "contains the character U+0000, which cannot be stored"
        )
    return value


# A user id in a path, as events can carry one: U+0000 never is (no database stores it).
UserIdPath = Annotated[str, Path(min_length=1, max_length=128), AfterValidator(_storable_id)]
# One the route then holds to the ids events may carry (id_problem), as the document says.
UserIdToSet = Annotated[
    str,
    Path(min_length=1, max_length=128, json_schema_extra={"pattern": ID_PATTERN}),
    AfterValidator(_storable_id),
]


# A TypedDict, not a model: the endpoints want the plain dict, and validating straight
# into one skips building a model and dumping it again (a tenth of the work of a batch).
# Unknown fields are refused, not dropped: a misspelt "user_trait" would otherwise be
# accepted with no traits, and the rules decided without them.
@with_config(
    ConfigDict(
        extra="forbid",
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
        },
    )
)
class EventIn(TypedDict):
    """One behavioural event, as the app sends it."""

    event_id: NotRequired[
        Annotated[Id | None, Field(description="Idempotency key; derived when absent")]
    ]
    user_id: Id
    event_type: NonEmpty
    event_timestamp: Annotated[
        str,
        StringConstraints(min_length=1, max_length=64),
        Field(
            description="ISO 8601; with an offset it is converted to UTC, without one it is UTC",
            json_schema_extra={"pattern": TIMESTAMP_PATTERN},
        ),
    ]
    properties: NotRequired[dict[str, Any]]
    user_traits: NotRequired[dict[str, Any]]


EVENT_FIELDS = tuple(EventIn.__annotations__)

MAX_BATCH = 1000
# One event's size, on its own or in a batch, and a batch's whole body.
MAX_EVENT_BYTES = 1024 * 1024
MAX_BATCH_BYTES = 8 * 1024 * 1024


# A misspelt field beside `events` is refused, as beside an event's own fields.
@with_config(ConfigDict(extra="forbid"))
class BatchIn(TypedDict):
    events: Annotated[
        list[EventIn], Field(min_length=1, max_length=MAX_BATCH, description="up to 1,000 events")
    ]


@with_config(ConfigDict(extra="forbid"))
class LooseBatchIn(TypedDict):
    """A batch whose events are not checked yet: each is then accepted or rejected alone."""

    events: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH)]


def _unsubscribe_name(value: object) -> object:
    """A name as the `unsubscribed` trait reads it, in any case and with `all` for all
    marketing: the same list sent here was refused where the trait took it."""
    name = value.lower() if isinstance(value, str) else None
    if name not in _UNSUBSCRIBE_NAMES:
        # Said here, not by the Literal below, whose message leaves out `all` and the case.
        raise PydanticCustomError(
            "literal_error", "Input should be 'email', 'sms', 'marketing' or 'all', in any case"
        )
    return "marketing" if name == "all" else name


_UNSUBSCRIBE_NAMES = frozenset({"email", "sms", "marketing", "all"})


class PreferencesIn(BaseModel):
    # A misspelt key (`unsubscribe`) is refused, as an event's is, rather than dropped
    # with the channels it named while the rest of the body is applied.
    model_config = ConfigDict(extra="forbid")

    unsubscribed: list[
        Annotated[Literal["email", "sms", "marketing"], BeforeValidator(_unsubscribe_name)]
    ] = Field(
        description="Channels the user unsubscribed from, in any case; `marketing` (or "
        "`all`, stored as `marketing`) for all marketing"
    )
