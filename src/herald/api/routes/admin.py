"""The rule set in force, user preferences (unsubscribes), and forgetting a user."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from herald.api.body import json_body, json_value
from herald.api.deps import AdminOnly, RuntimeDep, database_served
from herald.api.errors import Revalidation, body_errors
from herald.api.schemas.requests import PreferencesIn, UserIdPath, UserIdToSet
from herald.api.schemas.responses import (
    ADMIN_UNAUTHORIZED,
    DATABASE_UNAVAILABLE,
    UNSUPPORTED_BODY,
    ClientError,
    ForgottenInDatabaseOnly,
    ForgottenOut,
    PreferencesOut,
    RulesOut,
    ValidationErrors,
)
from herald.bootstrap import outbox_path
from herald.service.erasure import SendsNotRemoved, forget_user
from herald.service.intake import id_problem
from herald.service.preferences import set_unsubscribes
from herald.store.erasure import Forgotten

log = logging.getLogger(__name__)

router = APIRouter(tags=["admin"], dependencies=[AdminOnly])


@router.get(
    "/rules",
    response_model=None,  # answered as built here; RulesOut documents it
    responses={
        200: {"model": RulesOut, "description": "The rule set in force"},
        401: ADMIN_UNAUTHORIZED,
    },
)
def get_rules(runtime: RuntimeDep) -> dict[str, Any]:
    """The rule set in force: its version (a content hash), its file (`source`), its event
    types with their property schemas, its declared traits and its rules."""
    ruleset = runtime.ruleset
    return {
        "version": ruleset.version,
        "source": ruleset.source,
        "event_types": {
            name: {
                "description": spec.description,
                "properties": {
                    p.name: {
                        "type": p.type,
                        "required": p.required,
                        "minimum": p.minimum,
                        "maximum": p.maximum,
                        "enum": list(p.enum) if p.enum is not None else None,
                    }
                    for p in spec.properties.values()
                },
            }
            for name, spec in ruleset.event_types.items()
        },
        "traits": dict(ruleset.traits),
        "rules": [
            {
                "id": rule.id,
                "version": rule.version,
                "description": rule.description,
                "trigger": rule.trigger,
                "when": rule.condition.source if rule.condition else None,
                "after": {
                    "event": rule.after.event_type,
                    "within": rule.after.span,
                    "within_seconds": rule.after.within.total_seconds(),
                }
                if rule.after
                else None,
                "max_age": {
                    "age": rule.max_age.span,
                    "age_seconds": rule.max_age.age.total_seconds(),
                }
                if rule.max_age
                else None,
                "channel": rule.channel,
                "category": rule.category.value,
                "limit": rule.limit.value,
                "template": rule.template,
            }
            for rule in ruleset.rules
        ],
    }


_preferences = TypeAdapter(PreferencesIn)


async def _preferences_body(request: Request) -> PreferencesIn:
    """The body, read once the router's admin check has passed: a body parameter FastAPI
    reads before any dependency runs, so a client without the token had its JSON parsed,
    and was answered 422 for a malformed one instead of 401."""
    raw = await json_body(request)
    try:
        return _preferences.validate_json(raw)
    except ValidationError as exc:
        again = Revalidation(lambda: json_value(raw), _preferences.validate_python)
        errors = body_errors(exc, raw, tuple(PreferencesIn.model_fields), again)
        raise RequestValidationError(errors) from None


@router.post(
    "/users/{user_id:path}/preferences",
    response_model=None,  # answered as built; PreferencesOut documents it
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PreferencesIn.model_json_schema()}},
        }
    },
    responses={
        200: {"model": PreferencesOut, "description": "The preferences, and what they cancelled"},
        400: {
            "model": ClientError,
            "description": "The path is not UTF-8 once its %-escapes are decoded",
        },
        401: ADMIN_UNAUTHORIZED,
        413: {"model": ClientError, "description": "The body is over 1 MiB"},
        415: UNSUPPORTED_BODY,
        422: {"model": ValidationErrors, "description": "Invalid id or body, by field"},
        503: DATABASE_UNAVAILABLE,
    },
)
def set_preferences(
    user_id: UserIdToSet,
    runtime: RuntimeDep,
    request: Request,
    body: PreferencesIn = Depends(_preferences_body),
) -> dict[str, Any]:
    """Replace the user's unsubscribes. Marketing rules then skip them, and their marketing
    messages still waiting on those channels are cancelled; transactional go on."""
    problem = id_problem(user_id)
    if problem:
        error = {"loc": ["path", "user_id"], "msg": problem, "type": "invalid_id"}
        raise HTTPException(422, [error])
    preferences, cancelled = set_unsubscribes(
        runtime.database, user_id, body.unsubscribed, now=runtime.clock()
    )
    database_served(request)
    return {"user_id": user_id, "preferences": preferences, "cancelled_messages": cancelled}


@router.delete(
    "/users/{user_id:path}",
    response_model=None,  # answered as built; ForgottenOut documents it
    responses={
        200: {"model": ForgottenOut, "description": "What was deleted and redacted"},
        400: {
            "model": ClientError,
            "description": "The path is not UTF-8 once its %-escapes are decoded",
        },
        401: ADMIN_UNAUTHORIZED,
        404: {
            "model": ClientError,
            "description": "Unknown user: Herald has no event or preference of theirs",
        },
        422: {"model": ValidationErrors, "description": "Invalid id"},
        500: {
            "model": ForgottenInDatabaseOnly,
            "description": "Forgotten in the database, but the user's sends are still in "
            "the stub provider's file, which is no longer a regular file",
        },
        503: DATABASE_UNAVAILABLE,
    },
)
def delete_user(
    user_id: UserIdPath, runtime: RuntimeDep, request: Request
) -> dict[str, Any] | JSONResponse:
    """Forget the user, at their request: delete their events, traits and delivery
    attempts, and redact their messages, cancelling those not sent yet. The message rows
    stay without personal data, holding the user's limits, and so do the user's id and
    unsubscribes. An event of theirs sent again is stored without its properties and
    traits, and no rule acts on one dated before this. Asked again, it answers 200 with
    what was left."""
    try:
        done = forget_user(
            runtime.database,
            user_id,
            now=runtime.clock(),
            how="DELETE /users/{user_id}",
            stub_file=outbox_path(runtime.settings),
        )
    except SendsNotRemoved as exc:
        database_served(request)
        return _forgotten_in_database_only(user_id, exc)
    database_served(request)
    if done is None:
        raise HTTPException(404, f"unknown user {user_id!r}")
    return _forgotten_out(user_id, done)


def _forgotten_in_database_only(user_id: str, exc: SendsNotRemoved) -> JSONResponse:
    """The 500 of an erasure committed in the database whose sends stay in the stub's
    file: it says both, as a bare 500 left the client unsure whether anything was done,
    and the operator, who can fix the file, gets the same line in the log."""
    said = (
        f"user {user_id!r} was forgotten in the database, but their sends could not be "
        f"removed from the stub provider's file {exc.path}: {exc.problem}"
    )
    log.error("%s; forget them again once it is fixed", said)
    detail = f"{said}. Asked again once the file is fixed, Herald removes them"
    return JSONResponse(
        {"detail": detail, "forgotten": _forgotten_out(user_id, exc.forgotten)}, status_code=500
    )


def _forgotten_out(user_id: str, done: Forgotten) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "events_deleted": done.events,
        "traits_deleted": done.traits,
        "delivery_attempts_deleted": done.attempts,
        "messages_redacted": done.messages,
        "messages_cancelled": done.cancelled,
        "messages_in_flight": done.in_flight,
        "outbox_file_lines_deleted": done.outbox_lines,
    }
