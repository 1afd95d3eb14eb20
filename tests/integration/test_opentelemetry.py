"""FastAPI's own OpenTelemetry spans: off unless HERALD_OPENTELEMETRY asks for them (with
them, every request looks the providers up again)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from herald.api.app import create_app
from herald.config import Settings

EXPORTER = InMemorySpanExporter()
SIGNUP = {
    "user_id": "u_1",
    "event_type": "signup_completed",
    "event_timestamp": "2025-11-03T10:00:00Z",
}


@pytest.fixture(scope="module", autouse=True)
def global_tracer_provider() -> None:
    """A provider the process configured, as an operator's OpenTelemetry set-up would
    (global and set once per process, so shared by this module's tests)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


@pytest.mark.parametrize(("enabled", "expected"), [(False, 0), (True, 1)], ids=["off", "on"])
def test_request_spans_are_exported_only_when_asked_for(
    tmp_path: Path, spans: InMemorySpanExporter, enabled: bool, expected: int
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'herald.db'}",
        outbox_file=str(tmp_path / "outbox.jsonl"),
        opentelemetry=enabled,
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/events", json=SIGNUP).status_code == 202

    posts = [s for s in spans.get_finished_spans() if s.name.startswith("POST")]
    assert len(posts) == expected
