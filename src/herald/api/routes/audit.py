"""GET /audit/{user_id}: why each message was sent, suppressed or skipped."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from herald.api.deps import AdminOnly, RuntimeDep, database_served
from herald.api.schemas.requests import UserIdPath
from herald.api.schemas.responses import (
    ADMIN_UNAUTHORIZED,
    DATABASE_UNAVAILABLE,
    AuditOut,
    ClientError,
    ValidationErrors,
)
from herald.service.audit import MAX_PAGE_BYTES, BadCursor, user_audit

router = APIRouter(tags=["audit"], dependencies=[AdminOnly])


@router.get(
    "/audit/{user_id:path}",
    response_model=None,  # answered as the service builds it; AuditOut documents it
    responses={
        200: {"model": AuditOut, "description": "The user, a page of events, their messages"},
        400: {
            "model": ClientError,
            "description": "The cursor is not one this API gave for this user, or the path "
            "is not UTF-8 once its %-escapes are decoded",
        },
        401: ADMIN_UNAUTHORIZED,
        404: {
            "model": ClientError,
            "description": "Unknown user: Herald has no event or preference of theirs",
        },
        422: {"model": ValidationErrors, "description": "Invalid id or limit, by field"},
        503: DATABASE_UNAVAILABLE,
    },
)
def get_audit(
    user_id: UserIdPath,
    runtime: RuntimeDep,
    request: Request,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=1000,
            description="events on the page at most; a page also ends once its events "
            f"hold {MAX_PAGE_BYTES // 2**20} MiB of JSON (next_cursor goes on)",
        ),
    ] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Why each message was sent, suppressed or skipped: the user's profile, their events
    newest first (event time) with each decision and its reason, and the messages those
    events created or name, with every delivery attempt; a page at a time."""
    try:
        audit = user_audit(runtime.database, user_id, limit=limit, cursor=cursor)
    except BadCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    database_served(request)
    if audit is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown user {user_id!r}")
    return audit
