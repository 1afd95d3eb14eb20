"""The bearer tokens that guard routes: whether a request carries the one its route asks
for, and the refusal, a 401, of one that does not, as the routes answer it and as the
request edge answers it first for a body it would refuse (see ``token_refusal``)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.routing import BaseRoute, Route

from herald.api.openapi_security import ADMIN_SCHEME, INGEST_SCHEME

Scope = dict[str, Any]

# Each token as a refusal names it: a client holding the other one learns its mistake.
TOKEN_NAMES = {
    ADMIN_SCHEME: "the admin token (HERALD_ADMIN_TOKEN)",
    INGEST_SCHEME: "the ingest token (HERALD_INGEST_TOKEN)",
}
ASKS_FOR_BEARER = {"WWW-Authenticate": "Bearer"}


def carries(authorization: str, expected: str) -> bool:
    """Whether an ``Authorization`` header's value holds ``expected`` as its bearer token,
    compared in constant time. RFC 6750: "Bearer" in any case, one space or more, the
    token."""
    scheme, _, token = authorization.partition(" ")
    token = token.lstrip(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


def unauthorized(which: str) -> str:
    """The detail of a 401 for a route that takes the token ``which`` names."""
    return f"missing or wrong bearer token: this route takes {which}"


Guarded = Mapping[str, tuple[str | None, Sequence[BaseRoute]]]


def token_refusal(guarded: Guarded) -> Callable[[Scope], str | None]:
    """For the request edge: the detail of the 401 a request (its ASGI scope) gets for
    lacking the token its route asks for, else None. ``guarded``: each scheme's token
    (None when not set) and the routes it guards, as the OpenAPI document declares them.

    Asked only of a request whose body the edge would refuse (413, 415), so that a
    client without the token learns only that it needs one, as the route would have
    told it, and its request counts as no event: every other request is checked by its
    route alone, and the per-event path pays for no second check."""
    checks = [
        (token, TOKEN_NAMES[scheme], [route for route in routes if isinstance(route, Route)])
        for scheme, (token, routes) in guarded.items()
        if token is not None
    ]

    def refusal(scope: Scope) -> str | None:
        path = scope["path"]
        for token, which, routes in checks:
            # The routes' patterns read when asked: they match whole paths only once
            # the application has made them so, after this is built.
            if any(route.path_regex.match(path) for route in routes):
                # The first header of that name, read as Starlette's Request reads it.
                authorization = next(
                    (value for name, value in scope["headers"] if name == b"authorization"), b""
                )
                if carries(authorization.decode("latin-1"), token):
                    return None
                return unauthorized(which)
        return None

    return refusal
