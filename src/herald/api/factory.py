"""Entry point for uvicorn worker processes: settings come from ``HERALD_*`` variables."""

from __future__ import annotations

from fastapi import FastAPI

from herald.api.app import create_app
from herald.config import Settings
from herald.observability.logging import configure_logging


def app_from_environment() -> FastAPI:
    settings = Settings()  # type: ignore[call-arg]  # every field has a default or comes from HERALD_*
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
