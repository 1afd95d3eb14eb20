"""One shape for every 422, whichever route refused the request: ``{"detail": [{"loc",
"msg", "type"}]}``, as the OpenAPI document describes it (``ValidationErrors``).

FastAPI's own answer also echoes each refused value (``input``, e.g. a 5,000-character
id) and its ``ctx``; the ingestion routes never did. Here ``ctx`` is folded into the
message where it says what went wrong (where malformed JSON broke), and the value is not
echoed: the client has it, and a log or proxy that records error bodies need not."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException


async def validation_errors(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for it alone
    body = {"detail": [field_error(error) for error in exc.errors()]}
    return Response(orjson.dumps(body), status_code=422, media_type="application/json")


async def unreadable_body(request: Request, exc: Exception) -> Response:
    """FastAPI answers a body that ``json.loads`` cannot even decode (not UTF-8, or nested
    deeper than Python recurses) with a ``400`` of its own, which no route documents:
    it is malformed JSON like any other, a 422 as ``POST /events`` answers it. Every
    other HTTP error goes on to FastAPI's own answer."""
    assert isinstance(exc, HTTPException)  # registered for it alone
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, UnicodeDecodeError | RecursionError):
        return await http_exception_handler(request, exc)
    said = "not UTF-8" if isinstance(cause, UnicodeDecodeError) else "nested too deeply"
    error = {"loc": ["body"], "msg": f"Invalid JSON: {said}", "type": "json_invalid"}
    return Response(
        orjson.dumps({"detail": [error]}), status_code=422, media_type="application/json"
    )


def field_error(error: dict[str, Any]) -> dict[str, Any]:
    message = error.get("msg", "invalid")
    said = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and said:
        message = f"{message}: {said}"
    return {"loc": list(error.get("loc", ())), "msg": message, "type": error.get("type", "invalid")}
