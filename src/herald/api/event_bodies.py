"""Reading the body of POST /events and /events/batch into events, as the API checks
them: pydantic's parse straight from the bytes, then Herald's intake; a batch's events
each accepted or rejected on its own."""

from __future__ import annotations

import json
from typing import Any, NamedTuple, NoReturn, TypeVar

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from herald.api.body import json_value
from herald.api.errors import (
    LONE_SURROGATE,
    MOST_LEVELS,
    TOO_DEEP,
    Revalidation,
    body_errors,
    field_errors,
    nested_too_deep,
    number_too_long,
)
from herald.api.schemas.requests import (
    EVENT_FIELDS,
    MAX_EVENT_BYTES,
    BatchIn,
    EventIn,
    LooseBatchIn,
)
from herald.bootstrap import Runtime
from herald.config import Settings
from herald.service.intake import Horizon, Rejection, horizon, to_event

EVENT = TypeAdapter(EventIn)
BATCH = TypeAdapter(BatchIn)
_LOOSE_BATCH = TypeAdapter(LooseBatchIn)
Body = TypeVar("Body")


def inline_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """``adapter``'s JSON schema with its own definitions written in place: in the OpenAPI
    document, a ``#/$defs/...`` reference would point at the document, not the schema."""
    schema = adapter.json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def ingest_horizon(runtime: Runtime[Settings]) -> Horizon:
    """The latest event time the API takes now."""
    return horizon(runtime.clock(), runtime.settings.clock_skew)


def read_batch(
    raw: bytes, runtime: Runtime[Settings]
) -> tuple[list[dict[str, Any]], list[tuple[int, Any]]]:
    """A result item per event in the body (those refused already say why), and the
    events to store with their index."""
    read: list[Any] | None = None
    try:
        envelopes: list[Any] = BATCH.validate_json(raw)["events"]
        checked = True
    except ValidationError as exc:
        # Not every event is well formed (or this is no batch, which the loose parse
        # says): validate them one by one, so that each is accepted or rejected alone.
        unread = nested_too_deep(exc) or number_too_long(exc)
        read = _batch_read_again(raw) if unread else None
        envelopes = (
            read
            if read is not None
            else parse_body(_LOOSE_BATCH, raw, shape=_BATCH_SHAPE, fields=("events",))["events"]
        )
        checked = False
    items: list[dict[str, Any]] = []
    valid: list[tuple[int, Any]] = []
    measure = len(raw) > MAX_EVENT_BYTES // _MOST_GROWTH
    latest = ingest_horizon(runtime)
    for index, envelope in enumerate(envelopes):
        given_id = envelope.get("event_id") if isinstance(envelope, dict) else None
        # Echo the id only when it is one: a rejected event's field can be any JSON value.
        items.append({"index": index, "event_id": given_id if isinstance(given_id, str) else None})
        if measure and _too_large(envelope):
            runtime.metrics.count_event("unknown", "rejected")
            reject(items[index], [_TOO_LARGE])
            continue
        if read is not None and _deeper_than(envelope, MOST_LEVELS):
            runtime.metrics.count_event("unknown", "rejected")
            reject(items[index], [{"loc": [], "msg": TOO_DEEP, "type": "too_deep"}])
            continue
        if not checked:
            try:
                envelope = EVENT.validate_python(envelope)
            except ValidationError as exc:
                runtime.metrics.count_event("unknown", "rejected")
                reject(items[index], _event_errors(exc, envelope))
                continue
        event = to_event(envelope, runtime.ruleset, latest)
        if isinstance(event, Rejection):
            count_rejected(runtime, envelope["event_type"])
            reject(items[index], event.errors)
            continue
        valid.append((index, event))
    return items, valid


def _event_errors(exc: ValidationError, envelope: Any) -> list[dict[str, Any]]:
    """The errors of a batch's event, ``envelope``, that pydantic refused with ``exc``."""
    again = Revalidation(lambda: envelope, EVENT.validate_python)
    return field_errors(exc, fields=EVENT_FIELDS, again=again)


def _batch_read_again(raw: bytes) -> list[Any] | None:
    """The events of a batch that pydantic's parser could not read (nested too deep, or
    a number too long), read by the standard library's: each is then refused alone, as
    when posted alone, rather than one such event making the whole batch "Invalid JSON".
    None if that parser does not read it either (the loose parse then says why). A body
    it reads that is no batch (over 1,000 events, an unknown field) is refused whole as
    any such body is, whatever its events hold: told only of the event's depth, a client
    that fixed it was told of the batch's size only when sending it again."""
    parsed = read_again(raw)
    if parsed is None:
        return None
    try:
        events: list[Any] = _LOOSE_BATCH.validate_python(parsed)["events"]
    except ValidationError as exc:
        again = Revalidation(lambda: parsed, _LOOSE_BATCH.validator.validate_python)
        _refuse_body(exc, raw, again, shape=_BATCH_SHAPE, fields=("events",))
    return events


def read_again(raw: bytes) -> Any | None:
    """``raw`` read by the standard library's parser, which reads deeper than pydantic's,
    and an integer of more than 4,300 digits as one beyond 64 bits (the intake refuses
    both, naming the field: its digits are not needed to say so). None if it does not
    read it. Not orjson, which reads an integer beyond 64 bits as a float, storing another
    number than the one sent where the intake would have refused it. A lone surrogate
    anywhere in it is a ``RequestValidationError``, the body refused whole."""
    try:
        parsed = json.loads(raw, parse_int=_integer)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None
    try:
        json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # Unlike pydantic's, this parser takes a lone surrogate ("\\ud800"), which no
        # UTF-8 answer or column holds: an id or value echoed in an error made the answer
        # a server error. Refused whole, as pydantic's parser refuses it in a simpler
        # body, and for that reason: its own would name the depth or the number.
        raise RequestValidationError([_LONE_SURROGATE]) from None
    except RecursionError:
        return None
    return parsed


def _integer(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:  # over Python's limit of digits, so far beyond 64 bits
        return -(2**63) - 1 if digits.startswith("-") else 2**64


_LONE_SURROGATE = {
    "loc": ["body"],
    "msg": f"Invalid JSON: {LONE_SURROGATE}",
    "type": "json_invalid",
}


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``levels`` deep (itself one)."""
    if not isinstance(value, dict | list):
        return False
    if levels == 0:
        return True
    items = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(item, levels - 1) for item in items)


# How many times its bytes in the body an event's compact JSON can take, at most: a
# number written short is written out whole, `1e15,` as `1000000000000000.0,` (3.8
# times); whitespace, escapes and a key given twice only shrink. A body within a fourth
# of one event's limit holds no event beyond it, and is not measured: a body of up to
# 1 MiB was not, and an event of 1e15s was accepted in a small batch, rejected in a
# large one.
_MOST_GROWTH = 4

_TOO_LARGE = {
    "loc": [],
    "msg": "the event is over 1 MiB, the limit for one event in a batch as on its own",
    "type": "too_large",
}


def _too_large(envelope: Any) -> bool:
    try:
        return len(orjson.dumps(envelope)) > MAX_EVENT_BYTES
    except TypeError:  # a value JSON cannot hold (e.g. an integer beyond 64 bits): refused later
        return False


def count_rejected(runtime: Runtime, event_type: str) -> None:
    # A label per unknown type would let any client grow the metrics without bound.
    known = event_type in runtime.ruleset.event_types
    runtime.metrics.count_event(event_type if known else "unknown", "rejected")


class BodyShape(NamedTuple):
    """What a route's body is, as told to a client that sent something else: ``array`` to
    one that sent an array, ``misrouted`` to a field of ``other_fields``, the fields of
    the other ingestion route's body."""

    array: str
    other_fields: frozenset[str]
    misrouted: str


def parse_body(
    adapter: TypeAdapter[Body], raw: bytes, *, shape: BodyShape, fields: tuple[str, ...]
) -> Body:
    """Parse and validate straight from the bytes (one pass in pydantic, no ``json.loads``);
    errors are FastAPI's usual 422, located in the body. A body that is an array, or holds
    the other route's fields, is told the ``shape`` it should have, and one with another
    field than ``fields`` is told them."""
    try:
        # The adapter's validator itself: TypeAdapter.validate_json is a Python call more,
        # passing six options at their defaults, that pydantic's core then reads one by
        # one (measured: about 3,000 instructions of a POST /events).
        parsed: Body = adapter.validator.validate_json(raw)
        return parsed
    except ValidationError as exc:
        refused = exc
    # A number too long for pydantic's parser: read by the standard library's, the intake
    # then refuses it naming its field, rather than the whole body as "Invalid JSON".
    value = read_again(raw) if number_too_long(refused) else None
    if value is not None:
        try:
            validated: Body = adapter.validator.validate_python(value)
            return validated
        except ValidationError as exc:
            refused = exc
    again = Revalidation(lambda: json_value(raw), adapter.validator.validate_python)
    _refuse_body(refused, raw, again, shape=shape, fields=fields)


def _refuse_body(
    refused: ValidationError,
    raw: bytes,
    again: Revalidation,
    *,
    shape: BodyShape,
    fields: tuple[str, ...],
) -> NoReturn:
    """Refuse the body ``raw`` with the errors of ``refused``, as ``parse_body`` says them."""
    errors = body_errors(refused, raw, fields, again)
    array = raw.lstrip()[:1] == b"["
    for error in errors:
        if array and error["loc"] == ["body"] and error["type"] == "dict_type":
            error["msg"] += f": {shape.array}"
        elif error["type"] == "extra_forbidden" and _field_of(error) in shape.other_fields:
            error["msg"] = shape.misrouted
    raise RequestValidationError(errors) from None


def _field_of(error: dict[str, Any]) -> object:
    """The top-level field an error of the body is about, or None."""
    return error["loc"][1] if len(error["loc"]) == 2 else None


# An array of events, or the other route's body, is the likely mistake on either route:
# each says what it takes. Told by the nearest name alone, a batch sent to /events was
# asked "did you mean 'event_id'?" of its `events`, and an event sent to /events/batch
# "did you mean 'events'?" of its `event_type`.
EVENT_SHAPE = BodyShape(
    array='one event; send several to /events/batch as {"events": [...]}',
    other_fields=frozenset({"events"}),
    misrouted='unknown field: this route takes one event; send a batch, {"events": [...]}, '
    "to /events/batch",
)
_BATCH_SHAPE = BodyShape(
    array='a batch is {"events": [...]}',
    other_fields=frozenset(EVENT_FIELDS),
    misrouted='unknown field: a batch is {"events": [...]}; send one event alone to /events',
)


def in_body(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Errors located in an event, located in the request body that is that event."""
    return [{**error, "loc": ["body", *error["loc"]]} for error in errors]


def reject(item: dict[str, Any], errors: list[dict[str, Any]]) -> None:
    item.update(status="rejected", decisions=[], errors=errors)
