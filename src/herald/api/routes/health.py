"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from herald.api.deps import RuntimeDep
from herald.api.schemas.responses import ReadinessOut
from herald.observability.outage import OutageLog
from herald.service.readiness import readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_description="Alive")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,  # answered as built here; ReadinessOut documents it
    responses={
        200: {"model": ReadinessOut, "description": "Ready"},
        503: {
            "model": ReadinessOut,
            "description": "The database does not answer or is read-only (a PostgreSQL "
            "standby, or a server set read-only), its schema is not current, or its SQLite "
            "file is no longer at its path or lately locked by another process past an "
            "event's wait",
        },
    },
)
def readyz(runtime: RuntimeDep, request: Request, response: Response) -> dict[str, Any]:
    """The database answers and takes writes (it is not read-only: a PostgreSQL standby,
    or a server set read-only), its schema is current and, on SQLite, the file at the
    database's path is still the one this process writes to, and another process's
    write lock did not lately keep its events waiting until they were refused."""
    found = readiness(runtime.database, locked_out=runtime.writer.locked_out())
    # The answer names the error's type alone; the log says what the database said.
    outage: OutageLog = request.app.state.readiness_outage
    if found.error is not None:
        outage.failed(found.error)
    elif found.ready:
        outage.succeeded()
    if not found.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", **found.said}
    return {"status": "ready", **found.said, "rules": runtime.ruleset.version}


# Load balancers and uptime checks often ask with HEAD: listed in the document too, where a
# client generated from it would otherwise have no way to ask so.
router.add_api_route(
    "/healthz", healthz, methods=["HEAD"], response_description="Alive (the status alone)"
)
router.add_api_route(
    "/readyz",
    readyz,
    methods=["HEAD"],
    response_model=None,
    responses={
        200: {"description": "Ready (the status alone)"},
        503: {"description": "Unavailable, as the GET says why"},
    },
)


# Listed in the document too, as the README's API table lists it: /docs is where a
# newcomer looks for what the server answers.
@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus metrics, in its text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics(runtime: RuntimeDep) -> Response:
    """This process's metrics (see the README's table of metrics)."""
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
