"""How a request's body is read: malformed JSON, numbers beyond a double, content types and
charsets, a byte order mark, compression, and the size limit, declared or chunked."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.api.errors import MOST_LEVELS, TOO_DEEP
from herald.api.schemas.responses import ValidationErrors
from herald.config import Settings
from tests.support.api_requests import payment_failed, signup


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
    ("path", "raw", "column"),
    [
        ("/events", b'{"user_id": "u\\ud800", "event_type": "signup_completed"}', 21),
        ("/events", b'{"user_id": "u\\udc00", "event_type": "signup_completed"}', 20),
        ("/events/batch", b'{"events": [{"user_id": "u\\ud800x"}]}', 33),
        ("/users/u_1/preferences", b'{"unsubscribed": ["\\ud800"]}', 26),
    ],
    ids=["high half", "low half", "batch", "preferences"],
)
def test_half_a_surrogate_pair_is_named_where_the_parser_said_a_hex_escape_ended(
    client: TestClient, path: str, raw: bytes, column: int
) -> None:
    """pydantic's parser said "unexpected end of hex escape" or "lone leading surrogate in
    hex escape", which left a client looking for a broken escape in a well-formed one."""
    headers = {"content-type": "application/json"}

    response = client.post(path, content=raw, headers=headers)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error == {
        "loc": ["body"],
        "msg": "Invalid JSON: a string escapes half of a UTF-16 surrogate pair alone (e.g. "
        f"\\ud800), which UTF-8 cannot hold, at line 1 column {column}",
        "type": "json_invalid",
    }


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
    assert error.loc == ["body"]
    assert error.type == ("too_deep" if raw.startswith(b"[[") else "json_invalid")
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


@pytest.mark.parametrize("path", ["/events", "/events/batch", "/users/u_empty/preferences"])
@pytest.mark.parametrize("raw", [b"", b" \r\n", b"\xef\xbb\xbf"])
def test_an_empty_body_is_told_it_is_empty(client: TestClient, path: str, raw: bytes) -> None:
    # It was "Invalid JSON: EOF while parsing a value at line 1 column 0".
    response = client.post(path, content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body"], "msg": "the body is empty: send it as JSON", "type": "missing"}
    ]
    assert client.get("/audit/u_empty").status_code == 404


def nested(levels: int, event_id: str) -> bytes:
    """A signup of u_deep whose JSON nests arrays and objects ``levels`` deep (itself one)."""
    arrays = levels - 2  # the event, its properties, then the arrays
    event = signup(user="u_deep", event_id=event_id, properties={"d": "ARRAYS"})
    return json.dumps(event).replace('"ARRAYS"', "[" * arrays + "]" * arrays).encode()


def test_an_event_nested_deeper_than_herald_reads_is_refused_alone_and_in_its_batch(
    client: TestClient,
) -> None:
    # In a batch, such an event made the whole batch "Invalid JSON: recursion limit
    # exceeded", its valid events with it; alone, only its own levels count.
    as_json = {"content-type": "application/json"}
    deepest, too_deep = nested(MOST_LEVELS, "e_deepest"), nested(MOST_LEVELS + 1, "e_too_deep")

    alone = [client.post("/events", content=body, headers=as_json) for body in (deepest, too_deep)]
    plain = json.dumps(signup(user="u_deep", event_id="e_plain")).encode()
    # Read as every batch is: an integer beyond 64 bits is refused, not stored as a float.
    huge = json.dumps(signup(user="u_deep", event_id="e_huge", properties={"n": 2**70}))
    events = [plain, nested(MOST_LEVELS, "e_deepest_2"), too_deep, huge.encode()]
    answer = client.post(
        "/events/batch", content=b'{"events": [' + b", ".join(events) + b"]}", headers=as_json
    )

    assert [response.status_code for response in alone] == [202, 422]
    assert alone[1].json()["detail"] == [{"loc": ["body"], "msg": TOO_DEEP, "type": "too_deep"}]
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected", "rejected"]
    assert results[2]["errors"] == [{"loc": [], "msg": TOO_DEEP, "type": "too_deep"}]
    assert [e["type"] for e in results[3]["errors"]] == ["unstorable_value"]
    audit = client.get("/audit/u_deep")
    assert audit.status_code == 200
    assert sorted(e["event_id"] for e in audit.json()["events"]) == [
        "e_deepest", "e_deepest_2", "e_plain"
    ]  # fmt: skip


def test_a_batch_over_a_thousand_events_is_told_so_though_one_is_nested_too_deep(
    client: TestClient,
) -> None:
    # It was told only "too_deep", which a client fixing that event sent again to be told
    # only then that the batch was too large: refused whole, it is told what a batch of
    # that size is told whatever its events hold.
    as_json = {"content-type": "application/json"}
    plain = [json.dumps(signup(event_id=f"x{i}")).encode() for i in range(1000)]
    too_many = b'{"events": [' + b", ".join(plain) + b"]}"
    with_deep = b'{"events": [' + b", ".join([*plain, nested(MOST_LEVELS + 1, "deep")]) + b"]}"
    one_more = b'{"events": [' + b", ".join([*plain, plain[0]]) + b"]}"

    answers = [
        client.post("/events/batch", content=body, headers=as_json)
        for body in (with_deep, one_more)
    ]

    assert [answer.status_code for answer in answers] == [422, 422]
    assert answers[0].json() == answers[1].json()
    [error] = answers[0].json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "events"], "too_long")
    assert "1000" in error["msg"] and "1001" in error["msg"]
    assert client.post("/events/batch", content=too_many, headers=as_json).status_code == 200


def test_an_event_over_a_mebibyte_of_compact_json_is_rejected_whatever_its_batch_holds(
    client: TestClient,
) -> None:
    # A batch counts an event in compact JSON, where `1e15` is `1000000000000000.0`: this
    # event's 350 KB are 1.3 MB. It was measured only in a body over 1 MiB, so accepted
    # in a small batch and rejected beside a large event.
    as_json = {"content-type": "application/json"}
    numbers = b"[" + b",".join([b"1e15"] * 70_000) + b"]"

    def written_short(event_id: str) -> bytes:
        event = signup(user="u_exp", event_id=event_id, properties={"n": "NUMBERS"})
        return json.dumps(event).encode().replace(b'"NUMBERS"', numbers)

    large = json.dumps(signup(user="u_pad", properties={"p": "x" * 800_000})).encode()
    answers = [
        client.post("/events/batch", content=b'{"events": [' + body + b"]}", headers=as_json)
        for body in (written_short("e_alone"), written_short("e_beside") + b", " + large)
    ]

    results = [answer.json()["results"] for answer in answers]
    assert [[item["status"] for item in items] for items in results] == [
        ["rejected"],
        ["rejected", "accepted"],
    ]
    assert results[0][0]["errors"] == results[1][0]["errors"]
    assert [error["type"] for error in results[0][0]["errors"]] == ["too_large"]
    assert client.get("/audit/u_exp").status_code == 404


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


@pytest.mark.parametrize(
    ("method", "path", "answer"),
    [
        ("POST", "/rules", 405),
        ("POST", "/healthz", 405),
        ("PUT", "/events", 405),
        ("PATCH", "/users/u_1/preferences", 405),
        ("POST", "/event", 404),
        ("POST", "/user/u_1/preferences", 404),
    ],
)
def test_a_body_sent_where_no_route_reads_one_is_answered_as_a_request_without_it(
    client: TestClient, method: str, path: str, answer: int
) -> None:
    """Only the POST routes read a body, and so only they answer 413 and 415 for one, as
    the README says: a form posted to a mistyped path was told to send JSON (415), and
    then, sent as JSON, that the path does not exist."""
    refused_bodies = [
        ({"content-type": "text/plain"}, b"x"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, b"x"),
        ({"content-type": "application/json; charset=latin-1"}, b"{}"),
        ({"content-type": "application/json"}, b" " * (2**20 + 1)),
    ]
    for headers, body in refused_bodies:
        response = client.request(method, path, content=body, headers=headers)

        assert response.status_code == answer, (headers, response.text)


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


def test_an_integer_of_more_digits_than_python_reads_is_refused_alone_naming_its_field(
    client: TestClient,
) -> None:
    # Python reads integers of at most 4,300 digits: the parser refused the whole body as
    # "Invalid JSON: number out of range", naming no field, and a batch holding such an
    # event was refused with every valid event in it.
    as_json = {"content-type": "application/json"}
    long = json.dumps(signup(user="u_long", event_id="e_long", properties={"n": "DIGITS"}))
    long = long.replace('"DIGITS"', "-" + "9" * 5000)
    plain = json.dumps(signup(user="u_long", event_id="e_plain"))

    alone = client.post("/events", content=long.encode(), headers=as_json)
    batch = client.post(
        "/events/batch", content=f'{{"events": [{plain}, {long}]}}'.encode(), headers=as_json
    )
    # A body with no field to name it in is refused whole, told which limit it is over.
    unsubscribed = b'{"unsubscribed": [' + b"9" * 5000 + b"]}"
    preferences = client.post("/users/u_long/preferences", content=unsubscribed, headers=as_json)

    assert alone.status_code == 422
    assert [(e["loc"], e["type"]) for e in alone.json()["detail"]] == [
        (["body", "properties", "n"], "unstorable_value")
    ]
    assert batch.status_code == 200
    accepted, rejected = batch.json()["results"]
    assert (accepted["status"], rejected["status"], rejected["event_id"]) == (
        "accepted", "rejected", "e_long"
    )  # fmt: skip
    assert [(e["loc"], e["type"]) for e in rejected["errors"]] == [
        (["properties", "n"], "unstorable_value")
    ]
    [whole] = preferences.json()["detail"]
    assert preferences.status_code == 422 and whole["loc"] == ["body"]
    assert "a number has more than 4,300 digits" in whole["msg"]
    events = client.get("/audit/u_long").json()["events"]
    assert [event["event_id"] for event in events] == ["e_plain"]
