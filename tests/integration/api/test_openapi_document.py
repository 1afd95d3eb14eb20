"""The OpenAPI document held to the server: every answer is one it gives its route, and its
schemas say what the server accepts and sends."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.api.schemas import responses as api_responses
from herald.service.intake import id_problem
from tests.support.api_requests import ATTEMPT_3, guarded, payment_failed, signup
from tests.support.json_schema import schema_problems
from tests.support.processes import wait_for


def test_the_openapi_document_lists_the_errors_a_client_must_handle(
    database_url: str, tmp_path: Path
) -> None:
    settings = guarded(
        database_url, tmp_path, admin_token="admin-secret", ingest_token="ingest-secret"
    )
    with TestClient(create_app(settings)) as client:
        paths = client.get("/openapi.json").json()["paths"]

    assert {"401", "409", "413", "415", "422", "503"} <= set(paths["/events"]["post"]["responses"])
    assert {"400", "401", "404", "503"} <= set(paths["/audit/{user_id}"]["get"]["responses"])
    # The admin token guards /rules and /users as it does /audit.
    assert "401" in paths["/rules"]["get"]["responses"]
    preferences = paths["/users/{user_id}/preferences"]["post"]["responses"]
    assert {"401", "413", "415", "422", "503"} <= set(preferences)
    forget = paths["/users/{user_id}"]["delete"]["responses"]
    assert {"401", "404", "422", "503"} <= set(forget)
    assert "503" in paths["/readyz"]["get"]["responses"]
    # Every 422 has the one shape every route answers with (loc, msg, type).
    unprocessable = [
        operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
        for operations in paths.values()
        for operation in operations.values()
        if "422" in operation["responses"]
    ]
    assert len(unprocessable) == 5
    assert set(unprocessable) == {"#/components/schemas/ValidationErrors"}


def test_the_openapi_document_says_what_each_success_means(client: TestClient) -> None:
    # /docs described the 202 of POST /events, the 200 of a batch and /healthz as
    # "Successful Response", FastAPI's words for an answer it was told nothing about.
    paths = client.get("/openapi.json").json()["paths"]

    described = {
        (path, code): response["description"]
        for path, operations in paths.items()
        for operation in operations.values()
        for code, response in operation["responses"].items()
        if code.startswith("2")
    }
    assert ("/events", "202") in described
    assert {key for key, said in described.items() if said == "Successful Response"} == set()


def test_the_openapi_document_declares_the_headers_its_401s_and_503s_carry(
    database_url: str, tmp_path: Path
) -> None:
    settings = guarded(
        database_url, tmp_path, admin_token="admin-secret", ingest_token="ingest-secret"
    )
    with TestClient(create_app(settings)) as client:
        paths = client.get("/openapi.json").json()["paths"]
        refused = [client.get("/rules"), client.post("/events", json=payment_failed())]

    assert [answer.headers["www-authenticate"] for answer in refused] == ["Bearer", "Bearer"]
    headers = {
        (path, code): set(response.get("headers", ())) - {"X-Request-Id"}
        for path, operations in paths.items()
        for operation in operations.values()
        for code, response in operation["responses"].items()
        if code in ("401", "503") and path != "/readyz"
    }
    assert headers and all(
        named == ({"WWW-Authenticate"} if code == "401" else {"Retry-After"})
        for (_path, code), named in headers.items()
    ), headers


def test_the_openapi_document_declares_the_request_id_every_answer_carries(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    declared = {
        (method, path, code): response.get("headers", {}).get("X-Request-Id", {})
        for path, operations in paths.items()
        for method, operation in operations.items()
        for code, response in operation["responses"].items()
    }
    assert [key for key, header in declared.items() if not header.get("required")] == []
    answers = [
        client.post("/events", json=signup(user="u_rid"), headers={"X-Request-Id": "trace-1"}),
        client.get("/audit/nobody", headers={"X-Request-Id": "trace-2"}),
    ]
    assert [answer.headers["x-request-id"] for answer in answers] == ["trace-1", "trace-2"]


def test_the_openapi_document_lists_the_head_requests_health_checks_send_without_a_body(
    client: TestClient,
) -> None:
    # Answered but not listed, a client generated from the document could not send them;
    # listed with the GET's JSON, it would try to read a body a HEAD never has.
    paths = client.get("/openapi.json").json()["paths"]

    for path in ("/healthz", "/readyz"):
        answer = client.head(path)
        assert answer.status_code == 200 and answer.content == b""
        documented = paths[path]["head"]["responses"]["200"]
        assert "content" not in documented and "X-Request-Id" in documented["headers"]


def answered_as_documented(document: dict[str, Any], response: httpx.Response) -> None:
    """Hold ``response`` to what ``document`` (the app's /openapi.json) says of its
    operation, as a client generated from it relies on: a status the operation lists, its
    content type, a header it declares of the declared type, and a body of the schema it
    gives (a "3" is no integer, a "true" no boolean, a field the schema does not name is
    refused and one it requires must be there), and of the model that schema is made from."""
    method, path = response.request.method, response.request.url.path
    said = f"{method} {path} answered {response.status_code}: {response.text[:300]}"
    [operation] = [
        operations[method.lower()]
        for template, operations in document["paths"].items()
        if method.lower() in operations
        and re.fullmatch(re.sub(r"\{\w+\}", ".+", template), path, re.DOTALL)
    ]
    declared = operation["responses"].get(str(response.status_code))
    assert declared is not None, f"undocumented status: {said}"
    [(content_type, content)] = declared["content"].items()
    assert response.headers["content-type"].partition(";")[0] == content_type, said
    for name, header in declared.get("headers", {}).items():
        assert name in response.headers or not header.get("required"), f"no {name}: {said}"
        if header["schema"]["type"] == "integer" and name in response.headers:
            assert response.headers[name].isdigit(), said
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer", said
    schema = content["schema"]
    assert schema_problems(document, schema, response.json()) == [], said
    if "$ref" in schema:
        model = getattr(api_responses, schema["$ref"].removeprefix("#/components/schemas/"))
        model.model_validate_json(response.content, strict=True)


def test_every_answer_is_one_the_openapi_document_gives_its_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    event = payment_failed(properties=ATTEMPT_3, event_id="e1")
    as_json = {"Content-Type": "application/json"}
    answers = [
        client.post("/events", json=event),
        client.post("/events", json=event),
        client.post("/events", json=payment_failed(event_id="e1", user_id="u_2")),
        client.post("/events", json={"user_id": "u_1"}),
        client.post("/events", json=payment_failed(event_type="nope")),
        client.post("/events", content=b"{}", headers={"Content-Type": "text/plain"}),
        client.post("/events", content=b" " * (2**20 + 1), headers=as_json),
        client.post("/events/batch", json={"events": [payment_failed(event_id="e2"), {}, 5]}),
        client.post("/events/batch", json={"events": []}),
        client.post("/events/batch", content=b"{}", headers={"Content-Type": "text/plain"}),
        client.post("/events/batch", content=b" " * (2**23 + 1), headers=as_json),
        client.get("/audit/u_1", params={"limit": 1}),
        client.get("/audit/u_1", params={"cursor": "altered"}),
        client.get("/audit/Jos%E9"),
        client.get("/audit/nobody"),
        client.get("/audit/u_1", params={"limit": 0}),
        client.get("/rules"),
        client.post("/users/u_9/preferences", json={"unsubscribed": ["sms"]}),
        client.post("/users/u_9/preferences", json={"unsubscribed": ["fax"]}),
        client.post("/users/%20u_9/preferences", json={"unsubscribed": []}),
        client.post("/users/Jos%E9/preferences", json={"unsubscribed": []}),
        client.post(
            "/users/u_9/preferences", content=b"{}", headers={"Content-Type": "text/plain"}
        ),
        client.post("/users/u_9/preferences", content=b" " * (2**20 + 1), headers=as_json),
        client.delete("/users/u_9"),
        client.delete("/users/nobody"),
        client.delete("/users/Jos%E9"),
        client.get("/healthz"),
        client.get("/readyz"),
        # A GET's body is never read, whatever its size: no 413, which no GET lists.
        client.request("GET", "/audit/u_1", content=b" " * (2**20 + 1), headers=as_json),
    ]

    def delivered() -> Any:
        audit = client.get("/audit/u_1")
        return audit if all(m["delivery_attempts"] for m in audit.json()["messages"]) else None

    audit = wait_for(delivered, "every message's attempt")
    assert len(audit.json()["messages"]) == 2  # each with its attempt, checked below
    for answer in [*answers, audit]:
        answered_as_documented(document, answer)
    statuses = {answer.status_code for answer in answers}
    assert statuses == {200, 202, 400, 404, 409, 413, 415, 422}


def test_the_openapi_document_marks_required_what_every_answer_carries(
    client: TestClient,
) -> None:
    """A generated client makes a field the document does not require optional (a check
    before each read) and a nullable one a null to handle: the ingestion answers always
    carry their decisions and ids, and a decision leaves out a message id it does not
    have rather than sending null."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    assert schemas["EventAccepted"]["required"] == ["event_id", "status", "decisions"]
    assert schemas["BatchItem"]["required"] == ["index", "event_id", "status", "decisions"]
    decision = schemas["DecisionOut"]
    assert decision["required"] == ["rule", "rule_version", "outcome", "reason"]
    assert decision["properties"]["message_id"]["type"] == "string"
    assert decision["properties"]["dedup_key"]["type"] == "string"
    assert schemas["BatchItem"]["properties"]["errors"]["type"] == "array"


def test_every_refusal_for_a_missing_token_is_one_the_openapi_document_gives_its_route(
    database_url: str, tmp_path: Path
) -> None:
    settings = guarded(
        database_url, tmp_path, admin_token="admin-secret", ingest_token="ingest-secret"
    )
    with TestClient(create_app(settings)) as client:
        document = client.get("/openapi.json").json()
        answers = [
            client.post("/events", json=payment_failed()),
            client.post("/events/batch", json={"events": [payment_failed()]}),
            client.get("/audit/u_1"),
            client.get("/rules"),
            client.post("/users/u_1/preferences", json={"unsubscribed": []}),
            client.delete("/users/u_1"),
        ]

    assert [answer.status_code for answer in answers] == [401] * 6
    for answer in answers:
        answered_as_documented(document, answer)


def test_the_openapi_document_gives_the_ids_a_pattern_that_accepts_what_the_server_does(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    event = paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    [preferences_id] = paths["/users/{user_id}/preferences"]["post"]["parameters"]
    patterns = {
        event["properties"]["user_id"]["pattern"],
        event["properties"]["event_id"]["anyOf"][0]["pattern"],
        preferences_id["schema"]["pattern"],
    }
    [pattern] = patterns

    # Every character (none beyond the first plane is whitespace or a control), alone,
    # at either end and inside an id: the pattern and the server agree on each.
    for code in [*range(0x10000), 0x1F600, 0x10FFFF]:
        character = chr(code)
        for value in (character, f"{character}u", f"u{character}", f"u{character}1"):
            matched = re.fullmatch(pattern, value) is not None
            assert matched == (id_problem(value) is None), (hex(code), value)
    answers = {
        user: client.post("/events", json=signup(user)).status_code
        for user in ("u 1", "u\u20281", " u1", "u1\u3000", "u\x851")
    }
    assert answers == {"u 1": 202, "u\u20281": 202, " u1": 422, "u1\u3000": 422, "u\x851": 422}
    assert {user: bool(re.fullmatch(pattern, user)) for user in answers} == {
        user: code == 202 for user, code in answers.items()
    }


def test_the_openapi_document_gives_event_timestamp_the_shape_the_server_takes(
    client: TestClient,
) -> None:
    """A client that checks an event against the document before sending it catches a
    timestamp the server would refuse for its shape (a date no calendar has, or one out
    of range, is still the server's 422 alone)."""
    paths = client.get("/openapi.json").json()["paths"]
    event = paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    pattern = event["properties"]["event_timestamp"]["pattern"]
    taken = [
        "2025-10-31T19:24:11Z",
        "2025-10-31",
        "2025-10-31 19:24",
        "2025-10-31t19:24:11.123456789+01:00",
        "2025-10-31T19:24:11,5-0530",
        " 2025-10-31T19:24:11z\n",
        "2016-12-31T23:59:60Z",
    ]
    misshapen = [
        "000000000000000",
        "2025/10/31",
        "31-10-2025",
        "2025-10-31T19",
        "2025-10-31T19:24:11.Z",
        "2025-10-31T19:24:11+01:00:30",
        "2025-10-31X19:24",
        "\u0662\u0660\u0662\u0665-\u0661\u0660-\u0663\u0661",  # Arabic-Indic digits
        "yesterday",
    ]

    assert [value for value in taken if not re.search(pattern, value)] == []
    assert [value for value in misshapen if re.search(pattern, value)] == []
    answers = {
        value: client.post("/events", json=signup(f"u_{index}", event_timestamp=value))
        for index, value in enumerate(taken + misshapen)
    }
    assert {value: answer.status_code for value, answer in answers.items()} == {
        **dict.fromkeys(taken, 202),
        **dict.fromkeys(misshapen, 422),
    }
    assert {answers[value].json()["detail"][0]["type"] for value in misshapen} == {
        "invalid_timestamp"
    }


def test_the_request_schemas_in_the_openapi_document_stand_alone(client: TestClient) -> None:
    """Swagger UI resolves a reference against the document: a schema's own ``$defs``
    would not be found there."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/events", "/events/batch"):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "$ref" not in json.dumps(schema), path
    batch = paths["/events/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert "user_id" in batch["schema"]["properties"]["events"]["items"]["properties"]


def test_the_openapi_document_lists_the_metrics_a_scrape_answers(client: TestClient) -> None:
    # /metrics was left out of the document, the one route the README's API table names
    # that /docs did not show.
    operation = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    scrape = client.get("/metrics")

    assert scrape.status_code == 200
    documented = operation["responses"]["200"]
    [content_type] = documented["content"]
    assert scrape.headers["content-type"].partition(";")[0] == content_type == "text/plain"
    assert documented["content"][content_type]["schema"] == {"type": "string"}
    assert "X-Request-Id" in documented["headers"] and "x-request-id" in scrape.headers
    assert "herald_events_total" in scrape.text


def test_every_operation_says_what_it_does_and_readyz_names_every_reason_it_is_not_ready(
    client: TestClient,
) -> None:
    # /docs showed the audit and the rules with no word of what they hold, and the 503 of
    # /readyz named an unreachable database, an old schema and a moved file, but not a
    # database taking no writes (a PostgreSQL standby), which it answers 503 for too.
    paths = client.get("/openapi.json").json()["paths"]

    undescribed = [
        (method, path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if not operation.get("description")
    ]
    assert undescribed == []
    for method in ("get", "head"):
        readyz = paths["/readyz"][method]
        assert "read-only" in readyz["description"], method
    assert "read-only" in paths["/readyz"]["get"]["responses"]["503"]["description"]
