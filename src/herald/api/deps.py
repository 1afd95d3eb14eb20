"""Dependencies shared by the routes: the runtime and the bearer-token guards."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from herald.api.bearer import ASKS_FOR_BEARER, TOKEN_NAMES, carries, unauthorized
from herald.api.openapi_security import ADMIN_SCHEME, INGEST_SCHEME
from herald.bootstrap import Runtime
from herald.config import Settings
from herald.observability.outage import OutageLog


async def get_runtime(request: Request) -> Runtime[Settings]:
    runtime: Runtime[Settings] = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime[Settings], Depends(get_runtime)]


def routes_outage(request: Request) -> OutageLog:
    """The log of an outage as the routes other than ingestion meet it (ingestion's writer
    keeps its own): a line when it begins, one every few seconds, one when it ends."""
    outage: OutageLog = request.app.state.routes_outage
    return outage


def database_served(request: Request) -> None:
    """Say that a route's work on the database went through, ending an outage its log
    holds: called by each route that needs the database, once that work is done."""
    routes_outage(request).succeeded()


# On a 503 for an unavailable database: clients that retry at once, thousands a second,
# would only add to the load of a database coming back.
RETRY_AFTER_UNAVAILABLE = {"Retry-After": "5"}


def _check_bearer(request: Request, expected: str | None, which: str) -> None:
    """Refuse the request unless it carries ``expected`` as its bearer token; ``which``
    names that token in the refusal: a client holding the other one learns its mistake."""
    if expected is not None and not carries(request.headers.get("authorization", ""), expected):
        raise _refused(which)


def _refused(which: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, unauthorized(which), headers=ASKS_FOR_BEARER)


_ADMIN = TOKEN_NAMES[ADMIN_SCHEME]
_INGEST = TOKEN_NAMES[INGEST_SCHEME]


async def require_admin(request: Request, runtime: RuntimeDep) -> None:
    _check_bearer(request, runtime.settings.admin_token, _ADMIN)


AdminOnly = Depends(require_admin)


# The runtime's key in the lifespan's state, which the server copies into every request's
# scope: read there, it is a dict's item; ``app.state.runtime`` is looked up by a
# ``__getattr__`` that a failed attribute lookup, and its AttributeError, come before.
RUNTIME = "herald.runtime"


def ingest_runtime(request: Request) -> Runtime[Settings]:
    """The runtime for an ingestion route, after the ingest token check.

    A plain call, not a ``Depends``: on the hottest path FastAPI's dependency
    resolution cost about a sixth of a request.
    """
    runtime: Runtime[Settings]
    try:
        runtime = request.scope["state"][RUNTIME]
    except KeyError:  # a server that hands requests no lifespan state
        runtime = request.app.state.runtime
    # Checked here, not through _check_bearer: a call fewer on every event's request.
    expected = runtime.settings.ingest_token
    if expected is not None and not carries(request.headers.get("authorization", ""), expected):
        raise _refused(_INGEST)
    return runtime
