"""The guards of this server in the OpenAPI document: the bearer tokens, so that /docs
can send them ("Authorize"), the 401 of the routes a token set guards, and the 421 of a
server that answers loopback alone.

Only the document changes: the routes check their tokens as before (``deps``), and the
request edge the Host (``middleware``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

# Two schemes, not one: the admin and ingest tokens must differ (the settings refuse the
# same one), and Swagger UI sends a scheme's one value to every operation naming it.
ADMIN_SCHEME = "adminToken"
INGEST_SCHEME = "ingestToken"
_DESCRIPTIONS = {
    ADMIN_SCHEME: "The value of HERALD_ADMIN_TOKEN, which guards /audit, /rules and /users",
    INGEST_SCHEME: "The value of HERALD_INGEST_TOKEN, which guards /events and /events/batch",
}


def declare_guards(
    app: FastAPI,
    guarded: Mapping[str, tuple[str | None, Sequence[BaseRoute]]],
    *,
    loopback_only: bool,
    any_host: Callable[[str], bool] = lambda path: False,
) -> None:
    """Make ``app``'s document declare each scheme of ``guarded`` (name -> its token and
    the routes it guards) whose token is set, and attach it to those routes; drop the 401
    the routes list from those of a token not set; with ``loopback_only`` (the request
    edge refuses another Host), list that refusal, a 421, on every operation but those
    of the paths ``any_host`` names, which the edge answers under any name.

    Only what this server does is declared: a padlock, and an "Authorize" field, for a
    token it does not ask for would send users looking for one that does not exist, and
    a 401 or a 421 it never answers would be one more error for a client to handle; the
    document describes the server that serves it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        document = build()  # built once, then FastAPI's cached copy
        if first:
            for scheme, (token, routes) in guarded.items():
                if token is not None:
                    _declare(document, scheme, routes)
                else:
                    _drop_unauthorized(document, routes)
            if loopback_only:
                _declare_misdirected(document, any_host)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(document: dict[str, Any], scheme: str, routes: Iterable[BaseRoute]) -> None:
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[scheme] = {"type": "http", "scheme": "bearer", "description": _DESCRIPTIONS[scheme]}
    for path, method in _operations(routes):
        document["paths"][path][method]["security"] = [{scheme: []}]


def _drop_unauthorized(document: dict[str, Any], routes: Iterable[BaseRoute]) -> None:
    for path, method in _operations(routes):
        document["paths"][path][method]["responses"].pop("401", None)


def _operations(routes: Iterable[BaseRoute]) -> Iterable[tuple[str, str]]:
    for route in routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods or ():
                yield route.path_format, method.lower()


# Answered by the request edge before any route, so with the body every refusal has.
_MISDIRECTED = {
    "description": "Without both HERALD_ADMIN_TOKEN and HERALD_INGEST_TOKEN, this server "
    "answers only requests addressed to localhost or a loopback address, and the Host "
    "named another",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClientError"}}},
}


def _declare_misdirected(document: dict[str, Any], any_host: Callable[[str], bool]) -> None:
    for path, operations in document["paths"].items():
        if any_host(path):
            continue
        for operation in operations.values():
            operation["responses"]["421"] = _MISDIRECTED
