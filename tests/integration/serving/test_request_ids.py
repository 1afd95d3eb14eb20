"""Every response carries a request id, its own or the one the client sent, errors too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from tests.support.serving import signup, sqlite_url


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=sqlite_url(tmp_path),
        outbox_file=str(tmp_path / "outbox.jsonl"),
        dispatcher=False,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_every_response_carries_a_request_id_of_its_own(client: TestClient) -> None:
    first = client.get("/healthz")
    second = client.get("/healthz")

    assert first.headers["x-request-id"]
    assert second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_a_request_id_sent_by_the_client_is_echoed_back(client: TestClient) -> None:
    response = client.post(
        "/events", json=signup("u_1", "u_1@example.com"), headers={"X-Request-Id": "trace-7f3a"}
    )

    assert response.status_code == 202
    assert response.headers["x-request-id"] == "trace-7f3a"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/audit/nobody", None, 404),
        ("POST", "/events", {"user_id": "u_1"}, 422),
        ("POST", "/events", {"padding": "x" * 1_100_000}, 413),
    ],
    ids=["404", "422", "413"],
)
def test_error_responses_carry_the_request_id_too(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    response = client.request(method, path, json=body, headers={"X-Request-Id": "trace-err"})

    assert response.status_code == status
    assert response.headers["x-request-id"] == "trace-err"
