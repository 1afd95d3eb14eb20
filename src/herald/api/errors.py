"""One shape for every 422, whichever route refused the request: ``{"detail": [{"loc",
"msg", "type"}]}``, as the OpenAPI document describes it (``ValidationErrors``).

FastAPI's own answer also echoes each refused value (``input``, e.g. a 5,000-character
id) and its ``ctx``; the ingestion routes never did. Here ``ctx`` is folded into the
message where it says what went wrong (where malformed JSON broke), and the value is not
echoed: the client has it, and a log or proxy that records error bodies need not."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

# The levels of arrays and objects a body may nest, itself one: as deep as pydantic's
# parser reads (it refuses one deeper with "recursion limit exceeded"), and so the most
# an event may have, alone or in a batch.
MOST_LEVELS = 201
TOO_DEEP = f"nests arrays and objects deeper than {MOST_LEVELS} levels, the most Herald reads"
_RECURSION = "recursion limit exceeded"


def nested_too_deep(exc: ValidationError) -> bool:
    """Whether ``exc`` is pydantic's parser refusing JSON nested deeper than it reads: its
    one error, as a body it could not parse has no other (and one with many is not
    converted whole to be asked)."""
    return exc.error_count() == 1 and _too_deep(exc.errors()[0])


def _too_deep(error: Any) -> bool:
    return error["type"] == "json_invalid" and _RECURSION in error["msg"]


# Python reads integers of at most 4,300 digits (sys.int_info.default_max_str_digits), and
# pydantic's parser no number whose whole part is longer: "number out of range", it says.
NUMBER_DIGITS = 4300
_OUT_OF_RANGE = "number out of range"
_TOO_LONG = f"a number has more than {NUMBER_DIGITS:,} digits before its decimal point"


def number_too_long(exc: ValidationError) -> bool:
    """Whether ``exc`` is pydantic's parser refusing a number of more digits than it reads."""
    return exc.error_count() == 1 and _too_long(exc.errors()[0])


def _too_long(error: Any) -> bool:
    return error["type"] == "json_invalid" and _OUT_OF_RANGE in error["msg"]


# JSON may escape half of a UTF-16 surrogate pair alone ("\ud800"), which no UTF-8 text
# holds. pydantic's parser refuses it as "unexpected end of hex escape" (a high half) or
# "lone leading surrogate in hex escape" (a low half), words that send a client looking
# for a broken escape in a well-formed one.
LONE_SURROGATE = (
    "a string escapes half of a UTF-16 surrogate pair alone (e.g. \\ud800), which UTF-8 cannot hold"
)
_HALF_SURROGATE_SAID = ("unexpected end of hex escape", "lone leading surrogate in hex escape")


def _in_plain_words(message: str) -> str:
    """pydantic's words for malformed JSON, with a lone surrogate named as such (its place
    in the body kept)."""
    for said in _HALF_SURROGATE_SAID:
        if said in message:
            return message.replace(said, f"{LONE_SURROGATE},")
    return message


# The most errors a 422 lists, of a body or of an event in a batch; one more entry then
# says how many were left out. A body of 600,000 unknown fields was answered with an
# error each (56 MiB, a "did you mean" worked out for every one) after blocking its
# process for 16 s: the first errors say what is wrong as well.
MOST_ERRORS = 100


def field_errors(
    exc: ValidationError,
    prefix: tuple[str, ...] = (),
    fields: Sequence[str] = (),
    again: Revalidation | None = None,
) -> list[dict[str, Any]]:
    """pydantic's errors as the API gives them: where (under ``prefix``), what, which kind;
    the first ``MOST_ERRORS``, then how many more. ``fields``: those the body (or batch
    item) takes, named to a client that sent another. ``again``: how to find the errors
    of a value with too many to list without converting each of pydantic's."""
    total = exc.error_count()
    found = _unknown_fields_apart(again, fields) if total > MOST_ERRORS and again else None
    listed = (found or exc.errors(include_url=False, include_input=False))[:MOST_ERRORS]
    errors = [_api_error(error, prefix, fields) for error in listed]
    if total > len(errors):
        errors.append(_unlisted(total - len(errors), prefix))
    return errors


class Revalidation(NamedTuple):
    """A value that failed validation, read again (``value``, called once), and the
    ``validate`` that refused it, to validate its known fields alone."""

    value: Callable[[], Any]
    validate: Callable[[Any], object]


def _unknown_fields_apart(again: Revalidation, fields: Sequence[str]) -> list[Any] | None:
    """The errors of ``again``'s value as pydantic lists them (its known fields' first,
    then each unknown field in the order sent), found by validating the known fields
    alone and naming the others: an error object per unknown field, built by pydantic
    and converted, was most of the time a body of many took. None where the value, read
    again, is no object or has no unknown field (the caller then converts pydantic's
    errors: validating its known fields again would only make as many)."""
    try:
        value = again.value()
    except (ValueError, RecursionError):  # read differently from pydantic's parser
        return None
    if not isinstance(value, dict) or not fields:
        return None
    known = set(fields)
    unknown = [name for name in value if name not in known]
    if not unknown:
        return None
    errors: list[Any] = []
    try:
        again.validate({name: item for name, item in value.items() if name in known})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:MOST_ERRORS]
    listed = unknown[: MOST_ERRORS - len(errors)]
    return errors + [{"loc": (name,), "msg": _EXTRA, "type": "extra_forbidden"} for name in listed]


_EXTRA = "Extra inputs are not permitted"


def _api_error(error: Any, prefix: tuple[str, ...], fields: Sequence[str]) -> dict[str, Any]:
    if _too_deep(error):
        return {"loc": [*prefix, *error["loc"]], "msg": TOO_DEEP, "type": "too_deep"}
    if _too_long(error):
        # The parser's words alone named no limit: the body looked like valid JSON.
        message = f"{error['msg']}: {_TOO_LONG}, the most Herald reads"
        return {"loc": [*prefix, *error["loc"]], "msg": message, "type": error["type"]}
    if error["type"] == "json_invalid":
        message = _in_plain_words(error["msg"])
        return {"loc": [*prefix, *error["loc"]], "msg": message, "type": error["type"]}
    unknown = error["type"] == "extra_forbidden" and len(error["loc"]) == 1 and fields
    return {
        "loc": [*prefix, *error["loc"]],
        "msg": _unknown_field(str(error["loc"][0]), fields)
        if unknown
        else _IN_JSON_TERMS.get(error["msg"], error["msg"]),
        "type": error["type"],
    }


def _unlisted(count: int, prefix: tuple[str, ...]) -> dict[str, Any]:
    return {
        "loc": list(prefix),
        "msg": f"and {count:,} more {'error' if count == 1 else 'errors'}, not listed "
        f"(a 422 lists the first {MOST_ERRORS})",
        "type": "too_many_errors",
    }


def body_errors(
    exc: ValidationError, raw: bytes, fields: Sequence[str], again: Revalidation | None = None
) -> list[dict[str, Any]]:
    """``field_errors`` of a request body ``raw``, located in it. An empty one (a POST
    sent without its data) is told so, where the parser said "Invalid JSON: EOF while
    parsing a value at line 1 column 0"."""
    if not raw.strip():
        return [{"loc": ["body"], "msg": "the body is empty: send it as JSON", "type": "missing"}]
    return field_errors(exc, prefix=("body",), fields=fields, again=again)


def _unknown_field(name: str, fields: Sequence[str]) -> str:
    # pydantic says "Extra inputs are not permitted": the likely cause is a misspelling
    # (user_trait for user_traits), which the nearest name points out.
    close = difflib.get_close_matches(name, fields, n=1)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field{guess} (the fields are {', '.join(fields)})"


# A batch's events are validated after parsing, where pydantic names Python's types: the
# same event refused alone or in a batch is told the same thing, in JSON's words.
_IN_JSON_TERMS = {
    "Input should be a valid dictionary": "Input should be an object",
    "Input should be a valid list": "Input should be a valid array",
}


async def validation_errors(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for it alone
    body = {"detail": [_field_error(error) for error in exc.errors()]}
    return Response(orjson.dumps(body), status_code=422, media_type="application/json")


def _field_error(error: dict[str, Any]) -> dict[str, Any]:
    message = error.get("msg", "invalid")
    said = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid":
        message = _in_plain_words(f"{message}: {said}" if said else message)
    return {"loc": list(error.get("loc", ())), "msg": message, "type": error.get("type", "invalid")}
