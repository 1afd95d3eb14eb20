"""One shape for every 422, whichever route refused the request: ``{"detail": [{"loc",
"msg", "type"}]}``, as the OpenAPI document describes it (``ValidationErrors``).

FastAPI's own answer also echoes each refused value (``input``, e.g. a 5,000-character
id) and its ``ctx``; the ingestion routes never did. Here ``ctx`` is folded into the
message where it says what went wrong (where malformed JSON broke), and the value is not
echoed: the client has it, and a log or proxy that records error bodies need not."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

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
    """Whether ``exc`` is pydantic's parser refusing JSON nested deeper than it reads."""
    return any(_too_deep(error) for error in exc.errors())


def _too_deep(error: Any) -> bool:
    return error["type"] == "json_invalid" and _RECURSION in error["msg"]


def field_errors(
    exc: ValidationError, prefix: tuple[str, ...] = (), fields: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """pydantic's errors as the API gives them: where (under ``prefix``), what, which kind.
    ``fields``: those the body (or batch item) takes, named to a client that sent another."""
    return [
        {"loc": [*prefix, *error["loc"]], "msg": TOO_DEEP, "type": "too_deep"}
        if _too_deep(error)
        else {
            "loc": [*prefix, *error["loc"]],
            "msg": _unknown_field(str(error["loc"][0]), fields)
            if error["type"] == "extra_forbidden" and len(error["loc"]) == 1 and fields
            else _IN_JSON_TERMS.get(error["msg"], error["msg"]),
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]


def body_errors(exc: ValidationError, raw: bytes, fields: Sequence[str]) -> list[dict[str, Any]]:
    """``field_errors`` of a request body ``raw``, located in it. An empty one (a POST
    sent without its data) is told so, where the parser said "Invalid JSON: EOF while
    parsing a value at line 1 column 0"."""
    if not raw.strip():
        return [{"loc": ["body"], "msg": "the body is empty: send it as JSON", "type": "missing"}]
    return field_errors(exc, prefix=("body",), fields=fields)


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
    if error.get("type") == "json_invalid" and said:
        message = f"{message}: {said}"
    return {"loc": list(error.get("loc", ())), "msg": message, "type": error.get("type", "invalid")}
