"""Every response carries a request id, its own or the one the client sent, errors too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.cli.http_protocol import RequestDeadlineProtocol
from herald.config import Settings
from tests.support.serving import served_on_a_thread, signup, sqlite_url


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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The app on a real server: the test client cannot read an answer's header beyond
    ASCII."""
    settings = Settings(
        database_url=sqlite_url(tmp_path),
        outbox_file=str(tmp_path / "outbox.jsonl"),
        dispatcher=False,
    )
    app = create_app(settings)
    with served_on_a_thread(app, RequestDeadlineProtocol, log_config=None) as port:
        yield f"http://127.0.0.1:{port}"


def _answered_id(base: str, sent: bytes) -> bytes:
    answer = httpx.get(base + "/healthz", headers={"X-Request-Id": sent}, timeout=5)
    return dict(answer.headers.raw)[b"x-request-id"]


def test_a_request_id_beyond_ascii_is_cut_at_64_characters_not_64_bytes(served: str) -> None:
    # Read as Latin-1, an id of two-byte characters was cut at 32 of them, or in the
    # middle of one, and the answer's id was not the first 64 characters of the client's.
    assert _answered_id(served, ("é" * 70).encode()) == ("é" * 64).encode()


def test_a_request_id_not_in_utf8_is_read_as_latin1_and_echoed_as_sent(served: str) -> None:
    sent = "caf\xe9-2".encode("latin-1")

    assert _answered_id(served, sent) == sent
