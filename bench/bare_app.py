"""A bare FastAPI app: the ceiling Herald's ingestion is compared against.

It validates the same event payload as Herald's ``POST /events`` with an equivalent
pydantic v2 model and answers 202 without doing anything else, so the difference
between its figures and Herald's is the cost of Herald's own work (rules, storage,
outbox). It also answers ``POST /events/batch`` so the harness can be proven
end to end with this app standing in for Herald (``run.py --herald-cmd bare``).

Run it as ``python bench/bare_app.py --host 127.0.0.1 --port 8001``; it is served
by uvicorn with the settings ``herald serve`` uses: one worker, uvloop and
httptools when installed, no access log.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field, StringConstraints

MAX_BATCH = 1000


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class EventIn(BaseModel):
    """One event as posted to ``/events``; the same fields and limits as Herald's API schema.

    The timestamp is parsed here (ISO 8601, naive or with an offset), as Herald must
    also do before it can use it.
    """

    event_id: NonEmpty | None = None
    user_id: NonEmpty
    event_type: NonEmpty
    event_timestamp: datetime
    properties: dict[str, Any] = Field(default_factory=dict)
    user_traits: dict[str, Any] = Field(default_factory=dict)


class BatchIn(BaseModel):
    """Up to ``MAX_BATCH`` events in one request."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


def create_app() -> FastAPI:
    """Build the bare app: ``GET /healthz``, ``POST /events``, ``POST /events/batch``."""
    app = FastAPI(title="bare bench app", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/events", status_code=202)
    async def post_event(event: EventIn) -> dict[str, str]:
        return {"status": "accepted"}

    @app.post("/events/batch")
    async def post_batch(batch: BatchIn) -> dict[str, list[dict[str, str | None]]]:
        return {"results": [{"event_id": e.event_id, "status": "accepted"} for e in batch.events]}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the bare app until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        workers=1,
        loop="auto",
        http="auto",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
