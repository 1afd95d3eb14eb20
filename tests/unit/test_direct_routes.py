"""A route dispatched directly answers exactly as the same endpoint routed by FastAPI."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.responses import Response

from herald.api.direct import DirectRoutes


class Unstorable(ValueError):
    pass


async def endpoint(request: Request) -> Response:
    body = await request.body()
    if body == b"taken":
        raise HTTPException(409, "already taken", headers={"X-Why": "a test"})
    if body == b"invalid":
        raise RequestValidationError([{"loc": ["body", "x"], "msg": "bad", "type": "value"}])
    if body == b"unstorable":
        raise Unstorable("too long")
    if body == b"crash":
        raise RuntimeError("unexpected")
    routed = "endpoint" in request.scope  # set by FastAPI's router, never by the shortcut
    return JSONResponse({"echo": body.decode(), "routed": routed}, status_code=202)


async def unstorable(_request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": f"unstorable: {exc}"}, status_code=400)


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.add_api_route("/direct", endpoint, methods=["POST"])
    app.add_api_route("/routed", endpoint, methods=["POST"])
    app.add_exception_handler(ValueError, unstorable)
    app.add_middleware(DirectRoutes, routes={("POST", "/direct"): endpoint})
    return TestClient(app, raise_server_exceptions=False)


def test_the_shortcut_skips_the_router_and_answers_the_same(client: TestClient) -> None:
    direct = client.post("/direct", content=b"hello")
    routed = client.post("/routed", content=b"hello")

    assert direct.status_code == routed.status_code == 202
    assert direct.json() == {"echo": "hello", "routed": False}
    assert routed.json() == {"echo": "hello", "routed": True}


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"taken", 409), (b"invalid", 422), (b"unstorable", 400), (b"crash", 500)],
)
def test_errors_are_answered_by_the_applications_handlers(
    client: TestClient, body: bytes, status: int
) -> None:
    direct = client.post("/direct", content=body)
    routed = client.post("/routed", content=body)

    assert direct.status_code == routed.status_code == status
    assert direct.content == routed.content
    assert direct.headers.get("x-why") == routed.headers.get("x-why")


def test_other_methods_and_paths_go_through_the_router(client: TestClient) -> None:
    assert client.get("/direct").status_code == 405
    assert client.post("/direct/", content=b"x", follow_redirects=False).status_code == 307
