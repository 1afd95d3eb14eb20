"""What the request edge (``middleware.RequestEdge``) asks of the application: which
requests' bodies a route reads, and the counting of an ingestion body it refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from herald.api.deps import RUNTIME

Scope = dict[str, Any]


def body_readers(routes: list[BaseRoute]) -> Callable[[str, str], bool]:
    """Whether a route reads the body of a request of this method to this path: only
    those requests' bodies are checked for their size, type and encoding. The others'
    are never read, and a request a route does not take is answered 404 or 405, as
    without its body, not told to send JSON."""
    reading = [
        route for route in routes if isinstance(route, APIRoute) and "POST" in (route.methods or ())
    ]
    # Looked up by the whole path first: the ingestion routes', every event's request.
    fixed = {route.path for route in reading if not route.param_convertors}
    patterns = [route.path_regex for route in reading if route.param_convertors]

    def reads_body(method: str, path: str) -> bool:
        return method == "POST" and (
            path in fixed or any(pattern.match(path) for pattern in patterns)
        )

    return reads_body


def count_refused_event(scope: Scope) -> None:
    """Count a body refused at the request edge (a 413 or a 415) to an ingestion route as
    one rejected event of no type read, as the route counts a body it refuses with a 422:
    counted nowhere, a client whose every event was too large or not JSON showed no
    rejections."""
    if scope["path"] not in _INGESTION_PATHS:
        return
    state = scope.get("state") or {}
    runtime = state[RUNTIME] if RUNTIME in state else scope["app"].state.runtime
    runtime.metrics.count_event("unknown", "rejected")


_INGESTION_PATHS = frozenset({"/events", "/events/batch"})
