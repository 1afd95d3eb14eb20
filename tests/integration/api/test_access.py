"""Who may call the API: the ingestion and admin tokens, a server answering loopback alone,
and what the OpenAPI document says of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.api.schemas.responses import ClientError
from herald.config import Settings
from tests.support.api_requests import guarded, signup


def test_tokens_guard_ingestion_and_the_audit(database_url: str, tmp_path: Path) -> None:
    settings = guarded(
        database_url, tmp_path, admin_token="admin-secret", ingest_token="ingest-secret"
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/events", json=signup()).status_code == 401
        ingest = {"Authorization": "Bearer ingest-secret"}
        assert client.post("/events", json=signup(), headers=ingest).status_code == 202
        assert client.get("/audit/u_1", headers=ingest).status_code == 401
        assert (
            client.get("/audit/u_1", headers={"Authorization": "Bearer admin-secret"}).status_code
            == 200
        )
        assert client.get("/rules").status_code == 401
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("authorization", ["Bearer  admin-secret", "bearer admin-secret"])
def test_a_token_is_read_as_rfc_6750_writes_it(
    database_url: str, tmp_path: Path, authorization: str
) -> None:
    # The scheme in any case, then one space or more: a client writing two was refused
    # with "missing or wrong bearer token" though its token was right.
    settings = guarded(database_url, tmp_path, admin_token="admin-secret")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/rules", headers={"Authorization": authorization})

    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("host", "answered"),
    [
        ("localhost:8000", True),
        ("127.0.0.1", True),
        ("127.0.0.5:8000", True),
        ("[::1]:8000", True),
        ("app.localhost", True),
        ("rebound.example", False),
        ("127.0.0.1.rebound.example", False),
        ("localhost.rebound.example:8000", False),
    ],
)
def test_a_server_asked_to_answer_loopback_alone_refuses_any_other_host(
    tmp_path: Path, host: str, answered: bool
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'herald.db'}",
        outbox_file=str(tmp_path / "o.jsonl"),
        loopback_requests_only=True,
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/healthz", headers={"Host": host})

    assert response.status_code == (200 if answered else 421), response.text


def test_the_openapi_document_lists_the_421_on_every_route_of_a_server_answering_loopback_alone(
    tmp_path: Path,
) -> None:
    def documented(loopback_only: bool) -> tuple[list[dict[str, Any]], Any]:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'herald.db'}",
            outbox_file=str(tmp_path / "o.jsonl"),
            loopback_requests_only=loopback_only,
        )
        with TestClient(create_app(settings), base_url="http://localhost") as client:
            paths = client.get("/openapi.json").json()["paths"]
            refused = client.get("/rules", headers={"Host": "rebound.example"})
        return [
            (method, operation)
            for operations in paths.values()
            for method, operation in operations.items()
        ], refused

    operations, refused = documented(loopback_only=True)
    assert refused.status_code == 421
    ClientError.model_validate(refused.json())
    client_error = {"$ref": "#/components/schemas/ClientError"}
    # A HEAD's answer has no body: the health checks' HEADs list their 421 without one.
    assert len(operations) == 11 and all(
        operation["responses"]["421"]["content"]["application/json"]["schema"] == client_error
        if method != "head"
        else "content" not in operation["responses"]["421"]
        for method, operation in operations
    )
    # A server that answers any Host never says 421: its document does not list one.
    operations, answered = documented(loopback_only=False)
    assert answered.status_code == 200
    assert not [operation for _, operation in operations if "421" in operation["responses"]]


def test_a_refusal_for_the_wrong_token_names_the_token_the_route_takes(
    database_url: str, tmp_path: Path
) -> None:
    settings = guarded(
        database_url, tmp_path, admin_token="admin-secret", ingest_token="ingest-secret"
    )
    with TestClient(create_app(settings)) as client:
        audit = client.get("/audit/u_1", headers={"Authorization": "Bearer ingest-secret"})
        events = client.post(
            "/events", json=signup(), headers={"Authorization": "Bearer admin-secret"}
        )

    assert audit.status_code == events.status_code == 401
    assert "HERALD_ADMIN_TOKEN" in audit.json()["detail"]
    assert "HERALD_INGEST_TOKEN" in events.json()["detail"]


@pytest.mark.parametrize("body", [b"{not json", b'{"unsubscribd": []}', b"[" * 100_000])
def test_a_preferences_request_without_the_admin_token_is_refused_before_its_body_is_read(
    database_url: str, tmp_path: Path, body: bytes
) -> None:
    """As ``/events`` does: a client without the token learns nothing of the body's shape
    (422) and costs no parsing; only 401."""
    settings = guarded(database_url, tmp_path, admin_token="a-secret")
    headers = {"content-type": "application/json"}
    with TestClient(create_app(settings)) as client:
        refused = client.post("/users/u_1/preferences", content=body, headers=headers)
        admin = {**headers, "Authorization": "Bearer a-secret"}
        read = client.post("/users/u_1/preferences", content=body, headers=admin)

    assert refused.status_code == 401
    assert read.status_code == 422


def test_the_openapi_document_lets_docs_send_the_tokens_the_server_asks_for(
    database_url: str, tmp_path: Path
) -> None:
    """/docs' "Authorize" takes each token set, and "Try it out" sends it to the routes
    it guards; the routes that need none are left alone."""
    settings = guarded(
        database_url, tmp_path, admin_token="admin-secret", ingest_token="ingest-secret"
    )
    with TestClient(create_app(settings)) as client:
        document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "adminToken": ("http", "bearer"),
        "ingestToken": ("http", "bearer"),
    }
    security = {
        (path, method): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    ingest, admin = [{"ingestToken": []}], [{"adminToken": []}]
    assert security == {
        ("/events", "post"): ingest,
        ("/events/batch", "post"): ingest,
        ("/audit/{user_id}", "get"): admin,
        ("/rules", "get"): admin,
        ("/users/{user_id}/preferences", "post"): admin,
        ("/users/{user_id}", "delete"): admin,
        ("/healthz", "get"): None,
        ("/healthz", "head"): None,
        ("/readyz", "get"): None,
        ("/readyz", "head"): None,
        ("/metrics", "get"): None,
    }


def test_the_openapi_document_asks_for_no_token_the_server_does_not_ask_for(
    database_url: str, tmp_path: Path
) -> None:
    settings = guarded(database_url, tmp_path, admin_token="a-secret")
    with TestClient(create_app(settings)) as client:
        document = client.get("/openapi.json").json()
        assert client.get("/openapi.json").json() == document  # built once, the same after
    assert list(document["components"]["securitySchemes"]) == ["adminToken"]
    assert "security" not in document["paths"]["/events"]["post"]
    assert document["paths"]["/rules"]["get"]["security"] == [{"adminToken": []}]
    # Nor a refusal for a missing token that the server never answers.
    unauthorized = {
        path
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if "401" in operation["responses"]
    }
    assert unauthorized == {
        "/audit/{user_id}",
        "/rules",
        "/users/{user_id}/preferences",
        "/users/{user_id}",
    }
