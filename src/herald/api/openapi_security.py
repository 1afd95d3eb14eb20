"""The bearer tokens in the OpenAPI document, so that /docs can send them ("Authorize").

Only the document changes: the routes check their tokens as before (``deps``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


def declare_bearer_tokens(
    app: FastAPI, guarded: Mapping[str, tuple[str | None, Sequence[BaseRoute]]]
) -> None:
    """Make ``app``'s document declare each scheme of ``guarded`` (name -> its token and
    the routes it guards) whose token is set, and attach it to those routes.

    Only a token that is set is declared: a padlock, and an "Authorize" field, for a
    token this server does not ask for would send users looking for one that does not
    exist; the document describes the server that serves it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        document = build()  # built once, then FastAPI's cached copy
        if first:
            for scheme, (token, routes) in guarded.items():
                if token is not None:
                    _declare(document, scheme, routes)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(document: dict[str, Any], scheme: str, routes: Iterable[BaseRoute]) -> None:
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[scheme] = {"type": "http", "scheme": "bearer", "description": _DESCRIPTIONS[scheme]}
    for path, method in _operations(routes):
        document["paths"][path][method]["security"] = [{scheme: []}]


def _operations(routes: Iterable[BaseRoute]) -> Iterable[tuple[str, str]]:
    for route in routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods or ():
                yield route.path_format, method.lower()
