"""Direct dispatch of the ingestion routes: the request goes straight to its endpoint.

FastAPI's per-request machinery (route matching, parameter solving, the exit-stack and
exception middlewares, several layers of send wrappers) costs more than Herald's own work
on ``POST /events``: measured, a quarter of the server's CPU under load. The endpoints
named here take a bare ``Request`` and return a ``Response``, so they need none of it.
They stay registered as FastAPI routes, which document them in OpenAPI and answer any
request this shortcut does not take (another method, a trailing slash).

Errors are answered by the application's own exception handlers, so a shortcut request
fails exactly as a routed one would; anything unexpected propagates to the server-error
middleware outside, as it would from a route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Awaitable[Response]]
Scope = dict[str, Any]


class DirectRoutes:
    def __init__(self, app: Any, *, routes: Mapping[tuple[str, str], Endpoint]) -> None:
        """``routes`` maps (method, path) to the endpoint that answers it."""
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        endpoint = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = _handler_for(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler_for(handlers: Mapping[Any, Any], exc: Exception) -> Any:
    """The handler the application registered for ``exc``'s class or its nearest base."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
