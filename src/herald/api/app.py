"""The FastAPI application, built by ``create_app`` (nothing happens at import)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from herald import __version__
from herald.api.middleware import BodyLimit, RequestId
from herald.api.routes import admin, audit, events, health
from herald.bootstrap import Runtime, build_runtime
from herald.config import Settings

MIB = 1024 * 1024


def create_app(
    settings: Settings, *, runtime_factory: Callable[[Settings], Runtime] = build_runtime
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = runtime_factory(settings)
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Herald",
        version=__version__,
        description="Event-triggered messaging: declarative rules, limits, a transactional "
        "outbox, and an audit that explains every decision.",
        lifespan=lifespan,
    )
    for module in (events, audit, admin, health):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, default=1 * MIB, by_path={"/events/batch": 8 * MIB})
    app.add_middleware(RequestId)
    return app
