"""The FastAPI application, built by ``create_app`` (nothing happens at import)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

from herald import __version__
from herald.api.bearer import Guarded, token_refusal
from herald.api.deps import RETRY_AFTER_UNAVAILABLE, RUNTIME, routes_outage
from herald.api.direct import DirectRoutes
from herald.api.docs_pages import serve_docs_pages
from herald.api.edge_hooks import body_readers, count_refused_event
from herald.api.errors import validation_errors
from herald.api.middleware import RequestEdge
from herald.api.openapi_security import ADMIN_SCHEME, INGEST_SCHEME, declare_guards
from herald.api.routes import admin, audit, events, health, unsubscribe
from herald.api.schemas.requests import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from herald.api.schemas.responses import REQUEST_ID
from herald.bootstrap import Runtime, build_runtime
from herald.config import Settings
from herald.delivery.stop_lines import say_stopped, say_stopping
from herald.observability.metrics_port import serve_metrics
from herald.observability.outage import OutageLog
from herald.observability.server_state import CONNECTIONS_REFUSED
from herald.orphans import parent_gone
from herald.store.database_errors import unavailable
from herald.store.database_url import shown_url

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """The application for ``settings``. Nothing is opened until it starts: its lifespan
    builds the runtime (``build_runtime``), starts it, and stops it when the server shuts
    down."""
    app = FastAPI(
        title="Herald",
        version=__version__,
        description="Event-triggered messaging: declarative rules, limits, a transactional "
        "outbox, and an audit that explains every decision.",
        lifespan=_lifespan(settings),
        # Served by serve_docs_pages instead: FastAPI's load their scripts from a CDN.
        docs_url=None,
        redoc_url=None,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    # Every route but ingestion that needs the database: each ends an outage it logged.
    app.state.routes_outage = OutageLog(
        log, "reading the audit, setting preferences or forgetting a user"
    )
    # /readyz's own: a process its load balancer took out gets no other request whose
    # failure would say why the database does not answer.
    app.state.readiness_outage = OutageLog(log, "the readiness check (/readyz)")
    serve_docs_pages(app)
    guarded = _guarded(settings)
    _add_routes(app, settings, guarded)
    # Added first, so it runs inside RequestEdge: the request id and size limit still apply.
    app.add_middleware(
        DirectRoutes,
        routes={
            ("POST", "/events"): events.post_event,
            ("POST", "/events/batch"): events.post_batch,
        },
    )
    app.add_middleware(
        RequestEdge,
        body_limit=MAX_EVENT_BYTES,
        body_limit_by_path={"/events/batch": MAX_BATCH_BYTES},
        reads_body=body_readers(app.router.routes),
        body_refused=count_refused_event,
        token_refusal=token_refusal(guarded),
        loopback_only=settings.loopback_requests_only,
        for_recipients=unsubscribe.for_recipients,
    )
    for error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(RequestValidationError, validation_errors)
    return app


def _lifespan(
    settings: Settings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    """What the application does as it starts and stops: the runtime (kept in
    ``app.state.runtime``), the metrics port of a process that delivers, and the watch
    on the ``herald serve`` process that started this one. The state it gives the
    server holds the counter of the connections the server refuses, and the runtime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # `herald serve` checked the database before starting this process: a database
        # away now is an outage to answer 503 through, as it would be a second later.
        runtime = build_runtime(settings, database_may_be_away=True)
        app.state.runtime = runtime
        # Delivering on this loop, the process serves the metrics port that a dispatcher
        # process would: the same registry as /metrics, delivery counters included.
        port = settings.metrics_port
        stop_metrics = (
            serve_metrics(runtime.metrics.registry, settings.metrics_host, port)
            if runtime.dispatcher is not None and port is not None
            else None
        )
        await runtime.start()
        if runtime.dispatcher is not None:
            # Named as a worker names itself: its claims carry this name, and each API
            # process delivering inline is a dispatcher of its own.
            log.info(
                "dispatcher %s on %s",
                runtime.dispatcher.worker_id,
                shown_url(settings.database_url),
            )
        # Everything built so far lives as long as the process: moving it out of the
        # collector's sight makes each collection walk only the requests' own objects
        # (measured: a third less CPU per request).
        gc.collect()
        gc.freeze()
        # One of several API processes: uvicorn's supervisor, killed outright, would leave
        # it serving on the port, keeping a restarted server from binding.
        server = settings.server_pid
        watchdog = asyncio.create_task(_stop_without(server)) if server is not None else None
        try:
            yield {
                CONNECTIONS_REFUSED: runtime.metrics.connections_refused,
                # Also in each request's scope (see ingest_runtime).
                RUNTIME: runtime,
            }
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if stop_metrics is not None:
                await asyncio.to_thread(stop_metrics)
            await _stop_saying_so(settings, runtime)

    return lifespan


async def _stop_saying_so(settings: Settings, runtime: Runtime[Settings]) -> None:
    """Stop ``runtime``; delivering inline, say so as ``herald worker`` does, before and
    after the sends under way are finished and recorded."""
    if runtime.dispatcher is None:
        await runtime.stop()
        return
    say_stopping(settings, ctrl_c_again_stops_at_once=False)
    await runtime.stop()
    say_stopped(settings, runtime.dispatcher)


def _guarded(settings: Settings) -> Guarded:
    """Each bearer token (None when not set) and the routes it guards."""
    return {
        ADMIN_SCHEME: (settings.admin_token, admin.router.routes + audit.router.routes),
        INGEST_SCHEME: (settings.ingest_token, events.router.routes),
    }


def _add_routes(app: FastAPI, settings: Settings, guarded: Guarded) -> None:
    """Every route, and in the OpenAPI document the bearer token each group asks for and
    the Host the server refuses."""
    # Mounted route by route, ingestion first: an included router costs a second route
    # match per request, and every route tried before /events costs a regex.
    # The unsubscribe links' routes only where links are made: without them, no path of
    # the API changes.
    links = (unsubscribe,) if settings.unsubscribe_key is not None else ()
    app.router.routes[0:0] = [
        route for module in (events, audit, admin, health, *links) for route in module.router.routes
    ]
    declare_guards(
        app,
        guarded,
        loopback_only=settings.loopback_requests_only,
        any_host=unsubscribe.for_recipients,
    )
    _match_whole_paths(app.router.routes)
    _no_slash_redirects(app.router)
    _describe_answers(app)


def _describe_answers(app: FastAPI) -> None:
    """Make ``app``'s document declare the X-Request-Id header on every answer it lists
    (the request edge adds it to each, and a client generated from the document could not
    read it otherwise), and no body for a HEAD (a client generated from the document
    would try to read the JSON of the GET it answers as)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        document = build()  # built once, then FastAPI's cached copy
        if first:
            for operations in document["paths"].values():
                for method, operation in operations.items():
                    answers = operation["responses"]
                    # Copied, not updated: an answer may be a dict several routes share.
                    for code, answer in answers.items():
                        headers = {**answer.get("headers", {}), "X-Request-Id": REQUEST_ID}
                        answers[code] = {**answer, "headers": headers}
                        if method == "head":
                            answers[code].pop("content", None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _no_slash_redirects(router: Router) -> None:
    """Answer a path that a route would match without its trailing slash (``POST
    /events/``) with a 404 that names that path, rather than Starlette's redirect to it.
    The redirect was an empty 307: a client that follows none (httpx's default, Java's)
    showed a bare error, and one that follows it sent the event again, its personal data
    and token with it, to a URL made of the ``Host`` header and the scheme the server saw
    (``http``, behind a proxy that ends TLS)."""
    router.redirect_slashes = False

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        trimmed = path.rstrip("/")
        if scope["type"] == "http" and trimmed and trimmed != path:
            bare = {**scope, "path": trimmed}
            if any(route.matches(bare)[0] is not Match.NONE for route in router.routes):
                detail = f"Not Found: the path is {trimmed}, without the trailing slash"
                raise HTTPException(404, detail)
        await router.not_found(scope, receive, send)

    router.default = not_found


def _match_whole_paths(routes: list[BaseRoute]) -> None:
    """Make each route match the whole path, line breaks included. Starlette ends a
    route's pattern with ``$``, which also matches before a final line break, and its
    ``:path`` parameters stop at one: ``/audit/u_1%0A`` answered u_1's audit, and
    ``/users/u%0A1/preferences`` a bare 404. Matched whole, the line break is part of the
    id, which the route then refuses or does not find, as any other."""
    for route in routes:
        if isinstance(route, Route):
            pattern = route.path_regex.pattern.removesuffix("$")
            route.path_regex = re.compile(pattern + r"\Z", re.DOTALL)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The database is down or refuses for now (unreachable, locked, read-only, full): the
    client may retry, so a 503 rather than a 500. The log says so as for ingestion, not in
    a line per request: an audit page polled through an outage wrote one a request. Any
    other database error (a missing column: a bug) goes on to the 500 and its traceback."""
    if not unavailable(exc):
        raise exc
    routes_outage(request).failed(exc)
    body = {"detail": "the database is unavailable; retry"}
    return Response(
        orjson.dumps(body),
        status_code=503,
        media_type="application/json",
        headers=RETRY_AFTER_UNAVAILABLE,
    )


async def _stop_without(server_pid: int) -> None:
    """Stop this process as uvicorn stops it (SIGTERM: requests finish, the writer drains)
    once ``server_pid``, the process that started it, is gone (or was before it looked)."""
    await parent_gone(server_pid, every_s=0.5)
    log.warning("the herald serve process that started this API process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
