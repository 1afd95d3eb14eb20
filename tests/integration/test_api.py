"""The HTTP API, exercised through the ASGI app with its real lifespan (writer, dispatcher)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import create_engine, text

from herald.api.app import create_app
from herald.api.schemas import responses as api_responses
from herald.api.schemas.responses import ClientError, ValidationErrors
from herald.config import Settings
from herald.service.audit import MAX_PAGE_BYTES
from herald.service.intake import id_problem
from tests.support.ports import free_port
from tests.support.processes import wait_for


def payment_failed(user: str = "u_1", **overrides: Any) -> dict[str, Any]:
    event = {
        "user_id": user,
        "event_type": "payment_failed",
        "event_timestamp": "2025-10-31T19:24:11Z",
        "properties": {
            "amount": 1425.0,
            "attempt_number": 2,
            "failure_reason": "INSUFFICIENT_FUNDS",
        },
        "user_traits": {"email": "maria@example.com", "country": "PT", "marketing_opt_in": True},
    }
    event.update(overrides)
    return event


ATTEMPT_3 = {"amount": 12.5, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"}


def signup(user: str = "u_1", opt_in: bool = True, **overrides: Any) -> dict[str, Any]:
    event = {
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": "2025-11-01T10:00:00Z",
        "user_traits": {"email": f"{user}@example.com", "marketing_opt_in": opt_in},
    }
    event.update(overrides)
    return event


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_new_event_is_accepted_with_its_decisions(client: TestClient) -> None:
    response = client.post("/events", json=payment_failed(event_id="e1"))
    assert response.status_code == 202
    body = response.json()
    assert body["event_id"] == "e1" and body["status"] == "accepted"
    outcomes = {d["rule"]: d["outcome"] for d in body["decisions"]}
    assert outcomes == {"INSUFFICIENT_FUNDS_EMAIL": "triggered", "HIGH_RISK_ALERT": "skipped"}


def test_the_same_event_twice_is_a_duplicate_without_new_side_effects(client: TestClient) -> None:
    assert client.post("/events", json=payment_failed(event_id="e1")).status_code == 202
    again = client.post("/events", json=payment_failed(event_id="e1"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    audit = client.get("/audit/u_1").json()
    assert len(audit["events"]) == 1 and len(audit["messages"]) == 1


def test_a_duplicate_answers_with_the_decisions_made_when_the_event_was_accepted(
    client: TestClient,
) -> None:
    first = client.post("/events", json=payment_failed(event_id="e1")).json()

    again = client.post("/events", json=payment_failed(event_id="e1")).json()

    assert again["decisions"] == first["decisions"] != []


def test_a_batch_answers_each_duplicate_with_the_decisions_of_the_event_it_repeats(
    client: TestClient,
) -> None:
    client.post("/events", json=payment_failed(event_id="e1"))
    other = payment_failed(user="u_2", event_id="e2")
    body = {"events": [payment_failed(event_id="e1"), other, other]}

    results = client.post("/events/batch", json=body).json()["results"]

    assert [r["status"] for r in results] == ["duplicate", "accepted", "duplicate"]
    stored = client.get("/audit/u_1").json()["events"][0]["decisions"]
    assert results[0]["decisions"] == stored != []
    assert results[2]["decisions"] == results[1]["decisions"] != []


def test_an_event_without_id_is_deduplicated_by_user_type_and_timestamp(client: TestClient) -> None:
    first = client.post("/events", json=payment_failed())
    second = client.post("/events", json=payment_failed())
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["event_id"] == second.json()["event_id"]


def test_reusing_an_event_id_for_another_payload_is_a_conflict(client: TestClient) -> None:
    client.post("/events", json=payment_failed(event_id="e1"))
    response = client.post("/events", json=payment_failed(event_id="e1", user_id="u_2"))
    assert response.status_code == 409
    assert client.get("/audit/u_2").status_code == 404


def test_a_batch_conflict_without_event_id_says_which_fields_made_the_key(
    client: TestClient,
) -> None:
    client.post("/events", json=payment_failed())
    retried = payment_failed(properties=ATTEMPT_3)  # no event_id: same user, type and time

    [result] = client.post("/events/batch", json={"events": [retried]}).json()["results"]

    assert result["status"] == "rejected"
    [error] = result["errors"]
    assert error["type"] == "conflict"
    assert "the key is user_id + event_type + event_timestamp" in error["msg"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (payment_failed(event_type="payment_exploded"), "event_type"),
        (payment_failed(user_id=""), "user_id"),
        (payment_failed(user_id="   "), "user_id"),
        (payment_failed(event_timestamp="yesterday"), "event_timestamp"),
        (
            payment_failed(
                properties={"amount": "lots", "attempt_number": 1, "failure_reason": "X"}
            ),
            "amount",
        ),
        (
            payment_failed(properties={"amount": 5, "attempt_number": 0, "failure_reason": "X"}),
            "attempt_number",
        ),
        (payment_failed(properties={"amount": 5, "attempt_number": 1}), "failure_reason"),
        ({"user_id": "u_1", "event_type": "signup_completed"}, "event_timestamp"),
        # What no database can store is the client's error, not a failed commit (503).
        (
            payment_failed(
                properties={"amount": 2**64, "attempt_number": 1, "failure_reason": "X"}
            ),
            "amount",
        ),
        (payment_failed(user_traits={"email": "maria\x00@example.com"}), "email"),
        (payment_failed(event_id="evt\x00"), "event_id"),
        # A line break in an id would break the log line of an alert in two.
        (payment_failed(user_id="u_1\n2025-11-03 WARNING forged"), "user_id"),
    ],
)
def test_invalid_events_are_client_errors_that_store_nothing(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/events", json=body)
    assert response.status_code == 422
    locations = [error["loc"][-1] for error in response.json()["detail"]]
    assert field in locations
    assert client.get("/audit/u_1").status_code == 404


def test_an_unknown_event_type_lists_the_supported_ones(client: TestClient) -> None:
    detail = client.post("/events", json=payment_failed(event_type="nope")).json()["detail"]
    assert "signup_completed" in detail[0]["msg"] and "payment_failed" in detail[0]["msg"]


def test_a_misspelt_field_is_refused_rather_than_dropped(client: TestClient) -> None:
    body = signup(user="u_typo")
    body["user_trait"] = body.pop("user_traits")  # the traits would be lost with it

    response = client.post("/events", json=body)

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "user_trait"]]
    assert client.get("/audit/u_typo").status_code == 404


def test_a_misspelt_field_is_told_the_field_it_is_nearest_to_on_every_route(
    client: TestClient,
) -> None:
    event = signup(user="u_typo")
    event["user_trait"] = event.pop("user_traits")

    alone = client.post("/events", json=event).json()["detail"]
    [item] = client.post("/events/batch", json={"events": [event]}).json()["results"]
    batch = client.post("/events/batch", json={"event": [signup()]}).json()["detail"]
    preferences = client.post("/users/u_1/preferences", json={"unsubscribe": []}).json()

    said = [error["msg"] for error in (*alone, *item["errors"], *batch, *preferences["detail"])]
    assert [message for message in said if message.startswith("unknown field")] == [
        "unknown field; did you mean 'user_traits'? (the fields are event_id, user_id, "
        "event_type, event_timestamp, properties, user_traits)",
    ] * 2 + [
        "unknown field; did you mean 'events'? (the fields are events)",
        "unknown field; did you mean 'unsubscribed'? (the fields are unsubscribed)",
    ]


def test_an_array_of_events_is_told_the_shape_each_route_takes(client: TestClient) -> None:
    events = [signup(user="u_array")]

    alone = client.post("/events", json=events)
    batch = client.post("/events/batch", json=events)

    assert alone.status_code == batch.status_code == 422
    assert "/events/batch" in alone.json()["detail"][0]["msg"]
    assert '{"events": [...]}' in batch.json()["detail"][0]["msg"]
    assert client.get("/audit/u_array").status_code == 404


def test_a_misspelt_field_beside_a_batchs_events_is_refused(client: TestClient) -> None:
    body = {"events": [signup(user="u_batch_typo")], "dry_run": True}

    response = client.post("/events/batch", json=body)

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "dry_run"]]
    assert client.get("/audit/u_batch_typo").status_code == 404
    documented = client.get("/openapi.json").json()["paths"]["/events/batch"]["post"]
    assert "a field beside it" in documented["responses"]["422"]["description"]


@pytest.mark.parametrize("said", ["marketing", {"email": True}, ["sms", ["email"]], 1])
def test_an_unsubscribe_herald_cannot_read_stops_marketing_not_the_event(
    client: TestClient, said: Any
) -> None:
    # Ignored, it let the welcome email go to a user who had asked for none; refused, it
    # would have lost the event and its transactional messages with it.
    welcome = signup(user="u_unsub")
    welcome["user_traits"]["unsubscribed"] = said
    funds = payment_failed(user="u_unsub", user_traits={"email": "u_unsub@example.com"})

    [skipped] = client.post("/events", json=welcome).json()["decisions"]
    sent = client.post("/events", json=funds).json()["decisions"]

    assert skipped["outcome"] == "skipped"
    assert "unsubscribed trait cannot be read" in skipped["reason"]
    assert "taken as unsubscribed from all marketing" in skipped["reason"]
    assert [d["outcome"] for d in sent if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL"] == ["triggered"]


@pytest.mark.parametrize(
    ("said", "outcome"),
    [
        (["marketing"], "skipped"),
        (["all"], "skipped"),
        (["Email"], "skipped"),  # names in any case
        (["push"], "triggered"),  # a channel of the app's, not Herald's
        (["sms"], "triggered"),
        ([], "triggered"),
        (False, "triggered"),
        (None, "triggered"),
    ],
)
def test_an_unsubscribe_in_a_readable_shape_is_taken_as_it_says(
    client: TestClient, said: Any, outcome: str
) -> None:
    body = signup(user="u_unsub_ok")
    body["user_traits"]["unsubscribed"] = said

    [decision] = client.post("/events", json=body).json()["decisions"]

    assert decision["outcome"] == outcome


def test_an_integer_too_large_to_store_is_named_by_its_path(client: TestClient) -> None:
    body = json.dumps(signup(user="u_big")).encode()
    body = body.replace(
        b'"user_traits": {', b'"user_traits": {"n": {"deep": [1, 99999999999999999999999]}, '
    )

    response = client.post("/events", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "user_traits", "n", "deep", 1]
    assert "64 bits" in error["msg"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/users/u_1/preferences", b'{"unsubscribed": ["em'),
        ("POST", "/users/u_1/preferences", b'{"unsubscribed": ["fax"]}'),
        ("GET", f"/audit/{'x' * 5000}", None),
        ("GET", "/audit/u_1?limit=0", None),
    ],
)
def test_every_route_answers_a_422_in_the_documented_shape_without_echoing_the_input(
    client: TestClient, method: str, path: str, body: bytes | None
) -> None:
    headers = {"content-type": "application/json"}

    response = client.request(method, path, content=body, headers=headers)

    assert response.status_code == 422
    errors = ValidationErrors.model_validate(response.json()).detail  # loc, msg, type only
    assert errors and "x" * 200 not in response.text
    assert all(error.msg for error in errors)


def test_malformed_json_on_another_route_says_where_it_broke(client: TestClient) -> None:
    response = client.post(
        "/users/u_1/preferences",
        content=b'{"unsubscribed": ["em',
        headers={"content-type": "application/json"},
    )

    [error] = response.json()["detail"]
    assert error["type"] == "json_invalid"
    assert error["msg"] == "Invalid JSON: EOF while parsing a string at line 1 column 21"


@pytest.mark.parametrize(
    "raw",
    [b'{"unsubscribed": ["\xc3\x28"]}', b"\x80", b"[" * 100_000],
    ids=["utf8", "byte", "deep"],
)
def test_a_preference_body_json_cannot_decode_is_a_documented_422_not_a_400(
    client: TestClient, raw: bytes
) -> None:
    """Not UTF-8, or nested deeper than a JSON parser recurses: malformed JSON, answered
    as ``POST /events`` answers it, not with FastAPI's own undocumented 400."""
    headers = {"content-type": "application/json"}

    response = client.post("/users/u_1/preferences", content=raw, headers=headers)
    as_event = client.post("/events", content=raw, headers=headers)

    assert response.status_code == as_event.status_code == 422
    [error] = ValidationErrors.model_validate(response.json()).detail
    assert (error.loc, error.type) == (["body"], "json_invalid")
    assert response.json() == as_event.json()


def test_a_key_given_twice_counts_once_with_its_last_value(client: TestClient) -> None:
    # As JSON.parse and most parsers read it, and as the README says: the stored event,
    # its decisions and the audit all see the one value.
    body = json.dumps(payment_failed(user="u_twice")).encode()
    body = body.replace(
        b'"failure_reason": "', b'"failure_reason": "CARD_DECLINED", "failure_reason": "'
    )

    response = client.post("/events", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 202
    [event] = client.get("/audit/u_twice").json()["events"]
    assert event["properties"]["failure_reason"] == "INSUFFICIENT_FUNDS"
    funds = next(d for d in event["decisions"] if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL")
    assert funds["outcome"] == "triggered"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_malformed_or_non_object_bodies_are_client_errors(client: TestClient, raw: bytes) -> None:
    response = client.post("/events", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body"]]


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"Infinity", b"NaN"])
def test_a_number_beyond_a_double_or_not_a_number_is_refused_not_stored_as_null(
    client: TestClient, number: bytes
) -> None:
    body = json.dumps(payment_failed(user="u_inf")).encode().replace(b"1425.0", number)

    response = client.post("/events", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "properties", "amount"]
    assert client.get("/audit/u_inf").status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}, {}],
    ids=["text", "form", "none"],
)
def test_a_body_not_sent_as_json_is_refused_with_415_and_stores_nothing(
    client: TestClient, headers: dict[str, str]
) -> None:
    # What a web page on another origin could post without asking (no CORS preflight).
    body = json.dumps(payment_failed(user="u_form")).encode()

    response = client.post("/events", content=body, headers=headers)

    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert client.get("/audit/u_form").status_code == 404


def test_each_415_a_route_answers_is_one_its_openapi_entry_names(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    refusals = {
        "compressed": {"content-type": "application/json", "content-encoding": "gzip"},
        "application/json": {"content-type": "text/plain"},
        "UTF-8": {"content-type": "application/json; charset=latin-1"},
    }
    for path, documented in (
        ("/events", paths["/events"]),
        ("/events/batch", paths["/events/batch"]),
        ("/users/u_1/preferences", paths["/users/{user_id}/preferences"]),
    ):
        description = documented["post"]["responses"]["415"]["description"]
        for named, headers in refusals.items():
            assert client.post(path, content=b"{}", headers=headers).status_code == 415
            assert named in description, (path, description)


def test_a_body_starting_with_a_utf8_byte_order_mark_is_read_as_the_json_after_it(
    client: TestClient,
) -> None:
    # As a file saved by some editors and Windows tools begins.
    def with_mark(body: Any) -> dict[str, Any]:
        return {
            "content": b"\xef\xbb\xbf" + json.dumps(body).encode(),
            "headers": {"content-type": "application/json"},
        }

    answers = [
        client.post("/events", **with_mark(signup(user="u_bom"))),
        client.post("/events/batch", **with_mark({"events": [signup(user="u_bom2")]})),
        client.post("/users/u_bom/preferences", **with_mark({"unsubscribed": ["sms"]})),
    ]

    assert [answer.status_code for answer in answers] == [202, 200, 200], [a.text for a in answers]
    assert answers[1].json()["results"][0]["status"] == "accepted"


def test_json_with_a_charset_or_a_json_suffix_type_is_accepted(client: TestClient) -> None:
    body = json.dumps(payment_failed(user="u_ct")).encode()
    answers = [
        client.post("/events", content=body, headers={"content-type": content_type})
        for content_type in ("application/json; charset=utf-8", "application/vnd.herald+json")
    ]
    # The same event twice: stored the first time, recognised as stored the second.
    assert [(a.status_code, a.json()["status"]) for a in answers] == [
        (202, "accepted"),
        (200, "duplicate"),
    ], [a.text for a in answers]


@pytest.mark.parametrize("path", ["/events", "/events/batch"])
def test_json_declared_in_another_charset_than_utf8_is_refused_with_415_and_stores_nothing(
    client: TestClient, path: str
) -> None:
    # "JosÃ©" in Latin-1: its bytes read as UTF-8 would store the name "José".
    event = signup(user="u_latin", user_traits={"first_name": "JosÃ©"})
    body = json.dumps(event if path == "/events" else {"events": [event]}, ensure_ascii=False)
    headers = {"content-type": 'application/json; charset="ISO-8859-1"'}

    response = client.post(path, content=body.encode("latin-1"), headers=headers)

    assert response.status_code == 415
    assert response.json()["detail"] == "send JSON in UTF-8 (got charset 'iso-8859-1')"
    assert client.get("/audit/u_latin").status_code == 404


def test_a_retry_that_writes_a_number_differently_is_a_duplicate(client: TestClient) -> None:
    first = payment_failed(event_id="evt_num")
    retry = payment_failed(event_id="evt_num")
    retry["properties"] = {**first["properties"], "amount": 1425}  # as JavaScript writes 1425.0

    assert client.post("/events", json=first).status_code == 202
    again = client.post("/events", json=retry)

    assert again.status_code == 200 and again.json()["status"] == "duplicate"


def test_the_audit_of_a_user_id_with_a_slash_is_found(client: TestClient) -> None:
    assert client.post("/events", json=signup(user="acme/42")).status_code == 202

    for path in ("/audit/acme/42", "/audit/acme%2F42"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.json()["user"]["user_id"] == "acme/42"


def test_a_line_break_in_a_path_id_is_part_of_the_id_not_dropped_or_a_bare_404(
    client: TestClient,
) -> None:
    client.post("/events", json=signup(user="u_1"))

    audit = client.get("/audit/u_1%0A")
    preferences = client.post("/users/u%0A1/preferences", json={"unsubscribed": ["sms"]})

    assert audit.status_code == 404, audit.text  # "u_1\n" is nobody, not u_1
    assert audit.json()["detail"] == "unknown user 'u_1\\n'"
    assert preferences.status_code == 422, preferences.text
    assert "U+000A" in preferences.json()["detail"][0]["msg"]


def test_an_id_escaped_in_another_encoding_than_utf8_is_refused_not_stored_for_another_user(
    client: TestClient,
) -> None:
    client.post("/events", json=signup(user="José"))
    latin_1 = "Jos%E9"  # José as some clients still escape it; as UTF-8, "Jos\ufffd"

    unsubscribe = client.post(f"/users/{latin_1}/preferences", json={"unsubscribed": ["email"]})
    audit = client.get(f"/audit/{latin_1}")

    assert (unsubscribe.status_code, audit.status_code) == (400, 400), unsubscribe.text
    assert "Jos%C3%A9" in unsubscribe.json()["detail"]
    assert client.get("/audit/Jos\ufffd").status_code == 404  # no user was made of it
    assert client.get("/audit/Jos%C3%A9").json()["user"]["preferences"] == {}


def test_a_nul_in_a_path_id_is_refused_as_in_an_event_not_with_a_regular_expression(
    client: TestClient,
) -> None:
    answers = [
        client.get("/audit/u%001"),
        client.post("/users/u%001/preferences", json={"unsubscribed": []}),
    ]

    for answer in answers:
        assert answer.status_code == 422
        assert answer.json()["detail"] == [
            {
                "loc": ["path", "user_id"],
                "msg": "contains the character U+0000, which cannot be stored",
                "type": "invalid_id",
            }
        ]


def test_health_answers_head_as_load_balancers_ask(client: TestClient) -> None:
    assert client.head("/healthz").status_code == 200
    assert client.head("/readyz").status_code == 200


def test_a_body_over_one_mebibyte_is_refused_with_413(client: TestClient) -> None:
    big = payment_failed(
        properties={"amount": 1, "attempt_number": 1, "failure_reason": "x" * 1_100_000}
    )
    assert client.post("/events", json=big).status_code == 413


def chunked(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """``body`` sent in pieces with no declared length (Transfer-Encoding: chunked)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("path", ["/events", "/users/u_1/preferences"])
def test_a_chunked_body_over_one_mebibyte_is_refused_with_413_on_every_route(
    client: TestClient, path: str
) -> None:
    body = json.dumps({"events": [], "padding": "x" * 1_100_000}).encode()
    headers = {"content-type": "application/json"}

    response = client.post(path, content=chunked(body), headers=headers)

    assert response.status_code == 413


def test_a_chunked_body_is_not_read_for_a_request_refused_without_it(
    settings: Settings,
) -> None:
    """The token is checked before the body is read: a client without it cannot make
    Herald hold megabytes of body (as buffering it first, up to the limit, would)."""
    guarded = settings.model_copy(update={"ingest_token": "secret", "dispatcher": False})
    app = create_app(guarded)
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": pulled < 128}

    answers: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answers.append(message["status"])

    scope = {
        "type": "http", "method": "POST", "path": "/events/batch", "raw_path": b"/events/batch",
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "app": app,
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    }  # fmt: skip

    async def request() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(request())

    assert answers == [401]
    assert pulled == 0


@pytest.mark.parametrize(("path", "answer"), [("/rules", 405), ("/events", 422)])
def test_a_post_without_a_body_is_not_refused_for_its_content_type(
    settings: Settings, path: str, answer: int
) -> None:
    """``curl -X POST`` sends neither Content-Length nor Transfer-Encoding: no body, so no
    Content-Type to check. A POST to a GET route is a 405, an event without a body a 422."""
    app = create_app(settings.model_copy(update={"dispatcher": False}))
    answers: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answers.append(message["status"])

    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "app": app,
        "headers": [(b"host", b"127.0.0.1")],
    }  # fmt: skip

    async def request() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(request())

    assert answers == [answer]


def test_a_chunked_event_within_the_limit_is_accepted(client: TestClient) -> None:
    body = json.dumps(payment_failed(event_id="chunked")).encode()

    response = client.post(
        "/events", content=chunked(body, size=50), headers={"content-type": "application/json"}
    )

    assert response.status_code == 202


def test_a_compressed_body_is_refused_with_415_saying_so(client: TestClient) -> None:
    body = gzip.compress(json.dumps(payment_failed(user="u_gz")).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}

    response = client.post("/events", content=body, headers=headers)

    assert response.status_code == 415
    assert "Content-Encoding 'gzip' is not supported" in response.json()["detail"]
    assert client.get("/audit/u_gz").status_code == 404


def test_a_batch_accepts_valid_events_and_rejects_the_others_one_by_one(client: TestClient) -> None:
    events = [
        payment_failed(event_id="b1"),
        payment_failed(event_id="b2", event_type="nope"),
        "not an object",
        payment_failed(event_id="b1"),
        signup(user="u_9", event_id="b3"),
    ]
    response = client.post("/events/batch", json={"events": events})
    assert response.status_code == 200
    statuses = [item["status"] for item in response.json()["results"]]
    assert statuses == ["accepted", "rejected", "rejected", "duplicate", "accepted"]
    assert response.json()["results"][1]["errors"][0]["loc"] == ["event_type"]
    assert client.get("/audit/u_9").status_code == 200


def test_a_batch_locates_every_error_within_its_event(client: TestClient) -> None:
    """Whichever check refuses an event, its errors are located the same way: within
    that event, whose place in the batch is the result's ``index``."""
    events = [
        payment_failed(event_id="l1", event_type="nope"),  # refused by the rule set
        {k: v for k, v in payment_failed(event_id="l2").items() if k != "user_id"},  # schema
        payment_failed(event_id="l3", event_timestamp="yesterday"),  # by intake
        payment_failed(event_id="l4"),
        payment_failed(event_id="l4", user_traits={}),  # by the store: another payload
    ]

    results = client.post("/events/batch", json={"events": events}).json()["results"]

    assert [[error["loc"] for error in item.get("errors", [])] for item in results] == [
        [["event_type"]],
        [["user_id"]],
        [["event_timestamp"]],
        [],
        [["event_id"]],
    ]


@pytest.mark.parametrize(
    "event",
    [
        "not an event",
        payment_failed(properties=["amount", 5]),
        payment_failed(user_traits="maria@example.com"),
    ],
    ids=["string", "properties", "traits"],
)
def test_an_event_refused_in_a_batch_is_told_what_it_is_told_alone(
    client: TestClient, event: Any
) -> None:
    alone = client.post("/events", json=event).json()["detail"]
    [item] = client.post("/events/batch", json={"events": [event]}).json()["results"]

    assert item["errors"] == [{**error, "loc": error["loc"][1:]} for error in alone]


def test_a_batch_rejects_an_unstorable_event_alone_and_echoes_only_string_ids(
    client: TestClient,
) -> None:
    events = [payment_failed(event_id=-(2**63) - 1), payment_failed(event_id="fine")]
    events[0]["properties"] = {"amount": 2**64, "attempt_number": 1, "failure_reason": "X"}
    response = client.post("/events/batch", json={"events": events})
    assert response.status_code == 200
    rejected, accepted = response.json()["results"]
    assert (rejected["status"], rejected["event_id"]) == ("rejected", None)
    assert accepted["status"] == "accepted"


def test_an_address_too_long_to_store_skips_the_email_instead_of_failing_the_commit(
    client: TestClient,
) -> None:
    long_address = "a" * 400 + "@example.com"
    traits = {"email": long_address, "marketing_opt_in": True}
    response = client.post("/events", json=signup(user="u_long", user_traits=traits))

    assert response.status_code == 202, response.text
    [welcome] = response.json()["decisions"]
    assert welcome["outcome"] == "skipped"
    assert welcome["reason"].endswith("; no recipient: the email is longer than 320 characters")


def test_a_batch_over_a_thousand_events_is_refused(client: TestClient) -> None:
    response = client.post(
        "/events/batch", json={"events": [signup(event_id=f"x{i}") for i in range(1001)]}
    )
    assert response.status_code == 422


def test_the_audit_explains_skipped_suppressed_and_triggered_decisions(client: TestClient) -> None:
    client.post("/events", json=signup(user="u_5", opt_in=False, event_id="s1"))
    client.post("/events", json=payment_failed(user="u_5", event_id="p1"))
    client.post(
        "/events",
        json=payment_failed(user="u_5", event_id="p2", event_timestamp="2025-10-31T23:59:59Z"),
    )
    audit = client.get("/audit/u_5").json()
    by_event = {event["event_id"]: event["decisions"] for event in audit["events"]}
    assert "marketing_opt_in is false" in by_event["s1"][0]["reason"]
    first = next(d for d in by_event["p1"] if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL")
    second = next(d for d in by_event["p2"] if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL")
    assert first["outcome"] == "triggered"
    assert second["outcome"] == "suppressed"
    assert first["message_id"] in second["reason"]
    assert "INSUFFICIENT_FUNDS_EMAIL:u_5:2025-10-31" in second["reason"]
    assert [m["rule"] for m in audit["messages"]] == ["INSUFFICIENT_FUNDS_EMAIL"]
    assert [e["event_id"] for e in audit["events"]] == ["s1", "p2", "p1"]  # newest event time first


def test_the_audit_pages_with_a_cursor(client: TestClient) -> None:
    for day in range(1, 6):
        client.post("/events", json=payment_failed(event_timestamp=f"2025-10-0{day}T10:00:00Z"))
    first = client.get("/audit/u_1?limit=2").json()
    second = client.get(f"/audit/u_1?limit=2&cursor={first['next_cursor']}").json()
    third = client.get(f"/audit/u_1?limit=2&cursor={second['next_cursor']}").json()
    days = [e["event_timestamp"][:10] for page in (first, second, third) for e in page["events"]]
    assert days == ["2025-10-05", "2025-10-04", "2025-10-03", "2025-10-02", "2025-10-01"]
    assert third["next_cursor"] is None
    assert client.get("/audit/u_1?cursor=garbage!").status_code == 400


def test_an_audit_page_of_large_events_stops_at_its_byte_bound(client: TestClient) -> None:
    """A page of events near the 1 MiB limit each would be an answer of a gigabyte at
    limit=1000: it ends once it holds MAX_PAGE_BYTES, and its cursor goes on from there."""
    note = "x" * 900_000
    per_page = MAX_PAGE_BYTES // len(note)
    total = per_page + 3
    for n in range(total):
        timestamp = f"2025-10-01T10:{n:02d}:00Z"
        properties = {**payment_failed()["properties"], "note": note}
        answer = client.post(
            "/events", json=payment_failed(event_timestamp=timestamp, properties=properties)
        )
        assert answer.status_code == 202, answer.text

    first = client.get("/audit/u_1?limit=1000").json()
    second = client.get(f"/audit/u_1?limit=1000&cursor={first['next_cursor']}").json()

    assert len(first["events"]) == per_page
    assert len(first["events"]) + len(second["events"]) == total
    assert second["next_cursor"] is None


def altered(cursor: str) -> list[str]:
    """``cursor`` written in ways a lenient decoder reads as the same position, or nearly."""
    time_us, seq, owner = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).split(b":")

    def encoded(*parts: bytes) -> str:
        return base64.urlsafe_b64encode(b":".join(parts)).decode().rstrip("=")

    return [
        cursor + "=" * (-len(cursor) % 4 or 4),  # padding
        cursor[:4] + "!!" + cursor[4:],  # characters base64 skips
        encoded(b" " + time_us, seq, owner),
        encoded(time_us, b"+" + seq, owner),
        encoded(time_us, b"0" + seq, owner),
        encoded(f"{int(time_us):_}".encode(), seq, owner),
        encoded(time_us, seq),
        encoded(time_us, seq, owner.upper()),
    ]


def test_an_altered_audit_cursor_is_refused_with_a_400_not_read_as_a_page(
    client: TestClient,
) -> None:
    for day in range(1, 6):
        client.post("/events", json=payment_failed(event_timestamp=f"2025-10-0{day}T10:00:00Z"))
    cursor = client.get("/audit/u_1?limit=2").json()["next_cursor"]
    assert client.get("/audit/u_1", params={"limit": 2, "cursor": cursor}).status_code == 200
    for variant in altered(cursor):
        answer = client.get("/audit/u_1", params={"limit": 2, "cursor": variant})
        assert answer.status_code == 400, variant
        assert "next_cursor of the previous page" in answer.json()["detail"]


def test_a_cursor_from_another_users_audit_is_refused_with_a_400(client: TestClient) -> None:
    for user in ("u_1", "u_2"):
        for day in range(1, 4):
            event = payment_failed(user, event_timestamp=f"2025-10-0{day}T10:00:00Z")
            client.post("/events", json=event)
    cursor = client.get("/audit/u_1?limit=1").json()["next_cursor"]

    answer = client.get("/audit/u_2", params={"limit": 1, "cursor": cursor})

    assert answer.status_code == 400
    assert "another user's audit" in answer.json()["detail"]


def test_each_audit_page_lists_the_messages_its_decisions_created(client: TestClient) -> None:
    # The link comes before its signup, so the signup creates the nudge about the link:
    # a page of one event each, the signup's names both messages it created.
    link = {
        "event_id": "l1",
        "user_id": "u_8",
        "event_type": "link_bank_success",
        "event_timestamp": "2025-11-01T12:00:00Z",
        "user_traits": {"phone": "+351912345678"},
    }
    client.post("/events", json=link)
    client.post("/events", json=signup(user="u_8", event_id="s1"))
    first = client.get("/audit/u_8?limit=1").json()
    second = client.get(f"/audit/u_8?limit=1&cursor={first['next_cursor']}").json()
    assert [e["event_id"] for page in (first, second) for e in page["events"]] == ["l1", "s1"]
    created = {
        d["message_id"] for d in second["events"][0]["decisions"] if d["outcome"] == "triggered"
    }
    assert len(created) == 2  # the welcome email and the nudge
    assert {m["message_id"] for m in second["messages"]} == created
    # The link's page still lists the nudge, which is about the link.
    assert [(m["rule"], m["event_id"]) for m in first["messages"]] == [
        ("BANK_LINK_NUDGE_SMS", "l1")
    ]


def test_an_unknown_user_has_no_audit(client: TestClient) -> None:
    assert client.get("/audit/nobody").status_code == 404


def test_a_triggered_message_is_delivered_by_the_stub_provider(
    client: TestClient, settings: Settings
) -> None:
    client.post("/events", json=signup(user="u_7", event_id="s7"))
    outbox = Path(settings.outbox_file or "")
    wait_for(lambda: outbox.exists() and "WELCOME_EMAIL" in outbox.read_text(), "the stub's send")
    message = wait_for(
        lambda: [m for m in client.get("/audit/u_7").json()["messages"] if m["status"] == "sent"],
        "the audit's sent message",
    )
    assert message[0]["recipient"] == "u_7@example.com" and message[0]["sent_at"]
    assert "Welcome" in message[0]["subject"]


def test_the_rules_endpoint_shows_the_active_rule_set(client: TestClient) -> None:
    rules = client.get("/rules").json()
    assert len(rules["version"]) == 12
    assert [r["id"] for r in rules["rules"]] == [
        "WELCOME_EMAIL",
        "BANK_LINK_NUDGE_SMS",
        "INSUFFICIENT_FUNDS_EMAIL",
        "HIGH_RISK_ALERT",
    ]


def test_the_rules_endpoint_shows_each_property_schema_whole(
    settings: Settings, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events:\n"
        "  payment_failed:\n"
        "    properties:\n"
        "      amount: {type: number, required: true, minimum: 0, maximum: 10000}\n"
        "      failure_reason: {type: string, enum: [INSUFFICIENT_FUNDS, CARD_DECLINED]}\n"
        "rules:\n"
        "  - {id: BIG_FAILURE, trigger: payment_failed, channel: internal,\n"
        "     when: event.properties.amount > 5000}\n",
        encoding="utf-8",
    )
    with TestClient(create_app(settings.model_copy(update={"rules": str(rules)}))) as client:
        shown = client.get("/rules").json()

    assert shown["event_types"]["payment_failed"]["properties"] == {
        "amount": {
            "type": "number",
            "required": True,
            "minimum": 0,
            "maximum": 10000,
            "enum": None,
        },
        "failure_reason": {
            "type": "string",
            "required": False,
            "minimum": None,
            "maximum": None,
            "enum": ["INSUFFICIENT_FUNDS", "CARD_DECLINED"],
        },
    }


def test_the_rules_endpoint_shows_the_traits_the_rule_file_declares(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    shipped = client.get("/rules").json()["traits"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events:\n"
        "  signup_completed: {}\n"
        "traits:\n"
        "  email: string\n"
        "  loyalty_points: integer\n"
        "rules:\n"
        "  - {id: LOYAL, trigger: signup_completed, channel: internal,\n"
        "     when: has(user.loyalty_points) && user.loyalty_points > 100}\n",
        encoding="utf-8",
    )
    with TestClient(create_app(settings.model_copy(update={"rules": str(rules)}))) as other:
        declared = other.get("/rules").json()["traits"]

    assert shipped == {
        "email": "string",
        "phone": "string",
        "first_name": "string",
        "country": "string",
        "marketing_opt_in": "boolean",
        "risk_segment": "string",
        "timezone": "string",
    }
    assert declared == {"email": "string", "loyalty_points": "integer"}


def test_health_readiness_and_metrics_answer(client: TestClient) -> None:
    client.post("/events", json=payment_failed(event_id="m1"))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    metrics = client.get("/metrics").text
    assert 'herald_events_total{event_type="payment_failed",status="accepted"} 1.0' in metrics
    assert "herald_outbox_backlog" in metrics


def test_the_outbox_gauge_shows_each_unfinished_status_at_zero_when_no_message_has_it(
    settings: Settings,
) -> None:
    """A status whose series vanished (the last dead letter re-queued) left a graph at its
    last count."""
    with TestClient(create_app(settings.model_copy(update={"dispatcher": False}))) as client:
        client.post("/events", json=payment_failed(event_id="g1"))
        metrics = client.get("/metrics").text

    assert 'herald_messages{status="pending"} 1.0' in metrics
    assert 'herald_messages{status="sending"} 0.0' in metrics
    assert 'herald_messages{status="failed"} 0.0' in metrics


def test_the_metrics_show_how_many_events_each_commit_held(client: TestClient) -> None:
    batch = [payment_failed(event_id=f"c{n}") for n in range(3)] + [{"not": "an event"}]
    client.post("/events/batch", json={"events": batch})
    client.post("/events", json=payment_failed(event_id="c-single"))

    metrics = client.get("/metrics").text

    # The batch is one transaction of its three valid events; the single event another.
    assert "herald_commit_events_count 2.0" in metrics
    assert "herald_commit_events_sum 4.0" in metrics
    assert 'herald_commit_events_bucket{le="2.0"} 1.0' in metrics


def test_a_batch_counts_each_event_and_decision_under_its_own_series(client: TestClient) -> None:
    # u_1's two payment failures fall on one day: the second email is suppressed.
    batch = [
        payment_failed("u_1", event_id="s1"),
        payment_failed("u_1", event_id="s2", event_timestamp="2025-10-31T20:00:00Z"),
        payment_failed("u_2", event_id="s3", properties=ATTEMPT_3),
        signup("u_3", event_id="s4"),
    ]
    client.post("/events/batch", json={"events": batch})
    client.post("/events/batch", json={"events": batch[:1]})  # a duplicate

    metrics = client.get("/metrics").text

    for line in (
        'herald_events_total{event_type="payment_failed",status="accepted"} 3.0',
        'herald_events_total{event_type="payment_failed",status="duplicate"} 1.0',
        'herald_events_total{event_type="signup_completed",status="accepted"} 1.0',
        'herald_decisions_total{outcome="triggered",rule="INSUFFICIENT_FUNDS_EMAIL"} 2.0',
        'herald_decisions_total{outcome="suppressed",rule="INSUFFICIENT_FUNDS_EMAIL"} 1.0',
        'herald_decisions_total{outcome="triggered",rule="HIGH_RISK_ALERT"} 1.0',
        'herald_decisions_total{outcome="skipped",rule="HIGH_RISK_ALERT"} 2.0',
        'herald_decisions_total{outcome="triggered",rule="WELCOME_EMAIL"} 1.0',
    ):
        assert line in metrics


def test_unknown_event_types_share_one_metrics_series(client: TestClient) -> None:
    for name in ("made_up_1", "made_up_2"):
        assert client.post("/events", json=payment_failed(event_type=name)).status_code == 422
    metrics = client.get("/metrics").text
    assert 'herald_events_total{event_type="unknown",status="rejected"} 2.0' in metrics
    assert "made_up" not in metrics


def test_every_refused_event_is_counted_alone_or_in_a_batch(client: TestClient) -> None:
    client.post("/events", json={"user_id": "u_1"})
    client.post("/events", json=payment_failed(properties={"amount": "x"}))
    batch = [payment_failed(event_id="ok"), {"user_id": "u_1"}, payment_failed(event_type="nope")]
    client.post("/events/batch", json={"events": batch})

    metrics = client.get("/metrics").text

    assert 'herald_events_total{event_type="unknown",status="rejected"} 3.0' in metrics
    assert 'herald_events_total{event_type="payment_failed",status="rejected"} 1.0' in metrics
    assert 'herald_events_total{event_type="payment_failed",status="accepted"} 1.0' in metrics


def guarded(database_url: str, tmp_path: Path, **tokens: str) -> Settings:
    """Settings on the test database with the bearer ``tokens`` set (``admin_token``,
    ``ingest_token``)."""
    return Settings(database_url=database_url, outbox_file=str(tmp_path / "o.jsonl"), **tokens)


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
            operation for operations in paths.values() for operation in operations.values()
        ], refused

    operations, refused = documented(loopback_only=True)
    assert refused.status_code == 421
    ClientError.model_validate(refused.json())
    client_error = {"$ref": "#/components/schemas/ClientError"}
    assert len(operations) == 7 and all(
        operation["responses"]["421"]["content"]["application/json"]["schema"] == client_error
        for operation in operations
    )
    # A server that answers any Host never says 421: its document does not list one.
    operations, answered = documented(loopback_only=False)
    assert answered.status_code == 200
    assert not [operation for operation in operations if "421" in operation["responses"]]


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
        ("/healthz", "get"): None,
        ("/readyz", "get"): None,
    }  # /metrics is not in the document


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


def test_an_unsubscribe_skips_marketing_but_not_transactional_messages(client: TestClient) -> None:
    response = client.post("/users/u_3/preferences", json={"unsubscribed": ["email"]})
    assert response.status_code == 200
    welcome = client.post("/events", json=signup(user="u_3", event_id="s3")).json()["decisions"][0]
    assert welcome["outcome"] == "skipped" and "unsubscribed from email" in welcome["reason"]
    funds = client.post("/events", json=payment_failed(user="u_3", event_id="p3")).json()[
        "decisions"
    ]
    assert (
        next(d for d in funds if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL")["outcome"] == "triggered"
    )


def test_an_unsubscribe_cancels_a_marketing_dead_letter_as_its_answer_documents(
    client: TestClient,
) -> None:
    welcome = client.post("/events", json=signup(user="u_dead")).json()["decisions"][0]
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    wait_for(lambda: client.get("/audit/u_dead").json()["messages"][0]["status"] == "sent", "sent")
    with database.writer.begin() as connection:  # as if every attempt had failed
        connection.execute(
            text("UPDATE messages SET status = 'failed' WHERE message_id = :id"),
            {"id": welcome["message_id"]},
        )

    answer = client.post("/users/u_dead/preferences", json={"unsubscribed": ["email"]}).json()

    assert answer["cancelled_messages"] == [welcome["message_id"]]
    documented = client.get("/openapi.json").json()["components"]["schemas"]["PreferencesOut"]
    assert "dead letter" in documented["properties"]["cancelled_messages"]["description"]


def test_an_event_saying_unsubscribed_is_empty_does_not_undo_an_unsubscribe_made_here(
    client: TestClient,
) -> None:
    client.post("/users/u_4/preferences", json={"unsubscribed": ["email"]})
    traits = {"email": "u_4@example.com", "marketing_opt_in": True, "unsubscribed": []}
    answer = client.post("/events", json=signup(user="u_4", user_traits=traits)).json()

    welcome = answer["decisions"][0]
    assert welcome["outcome"] == "skipped" and "unsubscribed from email" in welcome["reason"]


def test_an_unsubscribe_the_app_sends_as_a_trait_holds_for_the_user_s_later_events(
    client: TestClient,
) -> None:
    unsubscribing = payment_failed(user="u_5", event_id="p5")
    unsubscribing["user_traits"] = {**unsubscribing["user_traits"], "unsubscribed": ["email"]}
    assert client.post("/events", json=unsubscribing).status_code == 202

    welcome = client.post("/events", json=signup(user="u_5")).json()["decisions"][0]

    assert welcome["outcome"] == "skipped" and "unsubscribed from email" in welcome["reason"]


def test_an_opt_out_dated_after_a_late_signup_skips_its_welcome_though_the_signup_opted_in(
    client: TestClient,
) -> None:
    opting_out = payment_failed(user="u_9", event_timestamp="2025-11-01T11:00:00Z")
    opting_out["user_traits"] = {"marketing_opt_in": False}
    assert client.post("/events", json=opting_out).status_code == 202

    answer = client.post("/events", json=signup(user="u_9")).json()  # 10:00, opted in

    welcome = answer["decisions"][0]
    assert welcome["outcome"] == "skipped"
    assert "marketing_opt_in is false" in welcome["reason"]
    assert "later" in welcome["reason"]
    assert client.get("/audit/u_9").json()["messages"] == []


def test_a_preference_for_an_id_no_event_could_carry_is_refused(client: TestClient) -> None:
    response = client.post("/users/%20u_6/preferences", json={"unsubscribed": ["email"]})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "user_id"]
    assert client.get("/audit/%20u_6").status_code == 404


def test_a_preference_body_with_a_key_it_does_not_define_is_refused_not_half_applied(
    client: TestClient,
) -> None:
    body = {"unsubscribed": ["email"], "unsubscribe": ["sms"]}
    response = client.post("/users/u_7/preferences", json=body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "unsubscribe"]
    assert client.get("/audit/u_7").status_code == 404  # nothing was stored


def test_a_database_out_of_reach_under_the_audit_is_a_503_to_retry_not_a_500(
    client: TestClient,
) -> None:
    client.post("/events", json=payment_failed(event_id="e1"))
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    reader = database.reader
    # Where nothing listens: every connection is refused, as in an outage.
    database.reader = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    try:
        response = client.get("/audit/u_1")
    finally:
        database.reader.dispose()
        database.reader = reader

    assert response.status_code == 503
    assert response.json() == {"detail": "the database is unavailable; retry"}


def test_the_openapi_document_lists_the_errors_a_client_must_handle(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {"401", "409", "413", "415", "422", "503"} <= set(paths["/events"]["post"]["responses"])
    assert {"400", "401", "404", "503"} <= set(paths["/audit/{user_id}"]["get"]["responses"])
    # The admin token guards /rules and /users as it does /audit.
    assert "401" in paths["/rules"]["get"]["responses"]
    preferences = paths["/users/{user_id}/preferences"]["post"]["responses"]
    assert {"401", "413", "415", "422", "503"} <= set(preferences)
    assert "503" in paths["/readyz"]["get"]["responses"]
    # Every 422 has the one shape every route answers with (loc, msg, type).
    unprocessable = [
        operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
        for operations in paths.values()
        for operation in operations.values()
        if "422" in operation["responses"]
    ]
    assert len(unprocessable) == 4
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
        (path, code): set(response.get("headers", ()))
        for path, operations in paths.items()
        for operation in operations.values()
        for code, response in operation["responses"].items()
        if code in ("401", "503") and path != "/readyz"
    }
    assert headers and all(
        named == ({"WWW-Authenticate"} if code == "401" else {"Retry-After"})
        for (_path, code), named in headers.items()
    ), headers


def answered_as_documented(document: dict[str, Any], response: httpx.Response) -> None:
    """Hold ``response`` to what ``document`` (the app's /openapi.json) says of its
    operation, as a client generated from it relies on: a status the operation lists, its
    content type, a header it declares of the declared type, and a body of the schema it
    names, validated strictly by the model that schema is made from (a "3" is no
    integer, a "true" no boolean, and a field the schema does not name is refused)."""
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
        if header["schema"]["type"] == "integer" and name in response.headers:
            assert response.headers[name].isdigit(), said
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer", said
    schema = content["schema"]
    if "$ref" in schema:
        model = getattr(api_responses, schema["$ref"].removeprefix("#/components/schemas/"))
        model.model_validate_json(response.content, strict=True)
    else:
        assert schema["additionalProperties"] == {"type": "string"}, f"unchecked schema: {said}"
        TypeAdapter(dict[str, str]).validate_json(response.content, strict=True)


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
        ]

    assert [answer.status_code for answer in answers] == [401] * 5
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


def test_the_request_schemas_in_the_openapi_document_stand_alone(client: TestClient) -> None:
    """Swagger UI resolves a reference against the document: a schema's own ``$defs``
    would not be found there."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/events", "/events/batch"):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "$ref" not in json.dumps(schema), path
    batch = paths["/events/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert "user_id" in batch["schema"]["properties"]["events"]["items"]["properties"]
