"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from herald.api.deps import RuntimeDep
from herald.api.schemas.responses import ReadinessOut
from herald.store.migrate import current_revision, head_revision

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
            "description": "The database does not answer, its schema is not current, or "
            "its SQLite file is no longer at its path",
        },
    },
)
def readyz(runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    """The database answers, its schema is current and, on SQLite, the file at the
    database's path is still the one this process writes to."""
    try:
        with runtime.database.reader.connect() as connection:
            connection.execute(text("SELECT 1"))
        revision = current_revision(runtime.database)
    except Exception as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        # The error's type alone: this route asks for no token, and the database's own
        # message names its host and port.
        return {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}
    gone = runtime.database.sqlite_file_problem()
    if gone is not None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "database": gone}
    if revision != head_revision():
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "schema": f"at {revision}, need {head_revision()}"}
    return {"status": "ready", "schema": revision, "rules": runtime.ruleset.version}


# Load balancers and uptime checks often ask with HEAD.
router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)


@router.get("/metrics", include_in_schema=False)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
