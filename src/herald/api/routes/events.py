"""POST /events and /events/batch: read the body (event_bodies.py), hand the events to the
group-commit writer, answer."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError

from herald.api.body import json_body
from herald.api.deps import RETRY_AFTER_UNAVAILABLE, ingest_runtime
from herald.api.event_bodies import (
    BATCH,
    EVENT,
    EVENT_SHAPE,
    count_rejected,
    in_body,
    ingest_horizon,
    inline_schema,
    parse_body,
    read_batch,
    reject,
)
from herald.api.schemas.requests import EVENT_FIELDS
from herald.api.schemas.responses import (
    ASKS_FOR_BEARER,
    RETRY_AFTER,
    UNSUPPORTED_BODY,
    BatchOut,
    ClientError,
    EventAccepted,
    ValidationErrors,
)
from herald.bootstrap import Runtime
from herald.service.ingest import IngestResult, IngestStatus
from herald.service.intake import Rejection, to_event
from herald.service.profile_limit import MAX_PROFILE_BYTES, MAX_PROFILE_TRAITS
from herald.service.writer import DatabaseUnavailable, IngestFailed

router = APIRouter(tags=["events"])  # the ingest token is checked by ingest_runtime()
# Answered before the endpoint runs (the ingest token, the request edge's checks).
EDGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ClientError,
        "description": "HERALD_INGEST_TOKEN is set and the bearer token is missing or wrong",
        "headers": ASKS_FOR_BEARER,
    },
    413: {"model": ClientError, "description": "The body is over 1 MiB (8 MiB for a batch)"},
    415: UNSUPPORTED_BODY,
    503: {
        "model": ClientError,
        "description": "Nothing was stored, retry: the database is unavailable (after "
        "`Retry-After` seconds), the server is stopping, or the events could not be stored",
        "headers": RETRY_AFTER,
    },
}
# Read for every event, looked up once: an enum member read through its class goes through
# the enum metaclass's ``__getattr__`` hook; a StrEnum's ``str()`` is its value, cheaper
# than ``.value``.
_ACCEPTED, _CONFLICTING = IngestStatus.ACCEPTED, IngestStatus.CONFLICT
_PROFILE_FULL = IngestStatus.PROFILE_FULL


class _JsonAnswer(Response):
    """A JSON answer (a 200 or 202: answers with a body) with the headers Starlette's
    ``Response`` would give it, in its order, made at once: its ``init_headers`` weighs
    the cases of every response for each one. Measured: about 7,000 instructions of
    every event."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int) -> None:
        self.body = body
        self.status_code = status_code
        self.background = None
        self.raw_headers = [(b"content-length", b"%d" % len(body)), _JSON_TYPE]


_JSON_TYPE = (b"content-type", b"application/json")


def _json(body: Any, code: int) -> Response:
    return _JsonAnswer(orjson.dumps(body), code)


def _result_json(result: IngestResult) -> dict[str, Any]:
    return {
        "event_id": result.event_id,
        "status": str(result.status),
        "decisions": [decision.as_json() for decision in result.decisions] or result.earlier,
    }


async def _store(runtime: Runtime, events: list[Any]) -> list[IngestResult]:
    try:
        return await runtime.writer.ingest(events)
    except IngestFailed as exc:
        # Says which failure it was (the database down or locked, the server stopping, or
        # one that is not the database's: "storage unavailable" was wrong for the last).
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{exc}; retry",
            headers=RETRY_AFTER_UNAVAILABLE if isinstance(exc, DatabaseUnavailable) else None,
        ) from None


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventAccepted,
    response_description="Accepted: the event, its decisions and its messages are stored",
    responses={
        200: {
            "model": EventAccepted,
            "description": "Duplicate: already accepted, nothing new happened; the decisions "
            "are those made then",
        },
        409: {"model": ClientError, "description": "The event_id is taken by a different payload"},
        422: {"model": ValidationErrors, "description": "Invalid event, field by field"},
        **EDGE_RESPONSES,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(EVENT)}},
        }
    },
)
async def post_event(request: Request) -> Response:
    """One event. 202 once it, its decisions and its messages are committed; the
    decisions say which rules triggered, were suppressed by a limit or were skipped."""
    started = time.perf_counter()
    runtime = ingest_runtime(request)
    try:
        body = parse_body(EVENT, await json_body(request), shape=EVENT_SHAPE, fields=EVENT_FIELDS)
    except RequestValidationError:
        runtime.metrics.count_event("unknown", "rejected")
        raise
    event = to_event(body, runtime.ruleset, ingest_horizon(runtime))
    if isinstance(event, Rejection):
        count_rejected(runtime, body["event_type"])
        raise HTTPException(422, in_body(event.errors))
    [result] = await _store(runtime, [event])
    if result.status is _PROFILE_FULL:
        count_rejected(runtime, event.event_type)
        raise HTTPException(422, in_body([PROFILE_FULL_ERROR]))
    runtime.metrics.count_event(event.event_type, str(result.status))
    runtime.metrics.observe_ingest("event", time.perf_counter() - started)
    if result.status is _CONFLICTING:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"event_id {event.event_id!r} was {_taken(body.get('event_id') is not None)}",
        )
    code = status.HTTP_202_ACCEPTED if result.status is _ACCEPTED else status.HTTP_200_OK
    return _json(_result_json(result), code)


@router.post(
    "/events/batch",
    response_model=BatchOut,
    response_description="One result per event, in order: accepted, duplicate or rejected "
    "with its errors (the valid events are stored whatever the others are)",
    responses={
        422: {
            "model": ValidationErrors,
            "description": "Not a batch: malformed JSON, no `events` list, a field beside "
            "it, or a list of no events or over 1,000",
        },
        **EDGE_RESPONSES,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(BATCH)}},
        }
    },
)
async def post_batch(request: Request) -> Response:
    """Up to 1,000 events; each is accepted, a duplicate or rejected on its own."""
    started = time.perf_counter()
    runtime = ingest_runtime(request)
    try:
        items, valid = read_batch(await json_body(request), runtime)
    except RequestValidationError:
        # Refused whole (no batch, no events, or malformed JSON): one rejected, as such a
        # body to /events is, else a client sending only broken batches showed no errors.
        runtime.metrics.count_event("unknown", "rejected")
        raise
    results = await _store(runtime, [event for _, event in valid]) if valid else []
    outcomes = []
    for (index, event), result in zip(valid, results, strict=True):
        full = result.status is _PROFILE_FULL
        outcomes.append((event.event_type, "rejected" if full else str(result.status)))
        given = items[index]["event_id"] is not None
        items[index]["event_id"] = result.event_id
        if full:
            reject(items[index], [PROFILE_FULL_ERROR])
        elif result.status is _CONFLICTING:
            reject(items[index], [conflict_error(given)])
        else:
            items[index].update(_result_json(result))
    runtime.metrics.count_many(runtime.metrics.events, outcomes)
    runtime.metrics.observe_ingest("batch", time.perf_counter() - started)
    return _json({"results": items}, status.HTTP_200_OK)


def _taken(given: bool) -> str:
    """What a conflict is, said to a client that sent its event's id (``given``) or not:
    then the key it collided on is derived, which the message says; to one that sent it,
    saying so read as if its id had been ignored."""
    if given:
        return "already used for a different payload"
    return (
        "already used for a different payload "
        "(without event_id, the key is user_id + event_type + event_timestamp)"
    )


def conflict_error(given: bool) -> dict[str, Any]:
    """A batch's error for an event whose id (``given`` by the client, or derived) is taken
    by another payload; `rules try` says the same."""
    return {"loc": ["event_id"], "msg": _taken(given), "type": "conflict"}


# A batch's error for an event whose traits would overfill the profile; `rules try` too.
PROFILE_FULL_ERROR = {
    "loc": ["user_traits"],
    "msg": f"would grow the user's traits past {MAX_PROFILE_BYTES:,} bytes of JSON or "
    f"{MAX_PROFILE_TRAITS:,} names; send fewer or shorter traits, or reuse the names sent",
    "type": "profile_full",
}
