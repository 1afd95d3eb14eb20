"""A client without the bearer token a route asks for is told 401 and nothing more, over
real HTTP as `herald serve` serves the app: not whether its body is too large or not
JSON, and none of its requests moves the event counters an operator watches."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from herald.api.app import create_app
from herald.cli.http_protocol import RequestDeadlineProtocol
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.api_requests import guarded, signup
from tests.support.serving import served_on_a_thread, sqlite_url

INGEST = {"Authorization": "Bearer ingest-secret-0123456789"}
ADMIN = {"Authorization": "Bearer admin-secret-0123456789"}
JSON = {"Content-Type": "application/json"}
TOO_LARGE = b'{"padding": "' + b"x" * 9_000_000 + b'"}'

# Each body the request edge refuses, with the answer a client holding the token gets.
REFUSED_BODIES: list[tuple[str, dict[str, str], bytes, int]] = [
    ("declared too large", JSON, TOO_LARGE, 413),
    ("not JSON", {"Content-Type": "text/plain"}, b"{}", 415),
    ("no Content-Type", {}, b"{}", 415),
    ("compressed", {**JSON, "Content-Encoding": "gzip"}, gzip.compress(b"{}"), 415),
    ("not UTF-8", {"Content-Type": "application/json; charset=latin-1"}, b"{}", 415),
]


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("token_before_body")
    url = sqlite_url(folder)
    database = Database(url)
    upgrade(database)
    database.dispose()
    settings = guarded(
        url,
        folder,
        admin_token=ADMIN["Authorization"].removeprefix("Bearer "),
        ingest_token=INGEST["Authorization"].removeprefix("Bearer "),
    )
    with (
        served_on_a_thread(create_app(settings), RequestDeadlineProtocol, log_config=None) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        yield client


def _events_counted(http: httpx.Client) -> list[str]:
    return [
        line
        for line in http.get("/metrics").text.splitlines()
        if line.startswith("herald_events_total{")
    ]


def _post(http: httpx.Client, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return http.post(path, content=body, headers=headers)


@pytest.mark.parametrize("path", ["/events", "/events/batch", "/users/u_1/preferences"])
@pytest.mark.parametrize(("case", "headers", "body", "refusal"), REFUSED_BODIES)
def test_a_body_the_edge_would_refuse_is_answered_401_without_the_token(
    http: httpx.Client,
    path: str,
    case: str,
    headers: dict[str, str],
    body: bytes,
    refusal: int,
) -> None:
    before = _events_counted(http)

    answer = _post(http, path, body, headers)

    assert answer.status_code == 401, (case, answer.text)
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "missing or wrong bearer token" in answer.json()["detail"]
    assert answer.headers["X-Request-Id"]
    assert _events_counted(http) == before


@pytest.mark.parametrize(("case", "headers", "body", "refusal"), REFUSED_BODIES)
def test_with_the_token_the_same_body_is_refused_for_what_it_is(
    http: httpx.Client, case: str, headers: dict[str, str], body: bytes, refusal: int
) -> None:
    answer = _post(http, "/events", body, {**headers, **INGEST})

    assert answer.status_code == refusal, (case, answer.text)


def test_the_other_route_s_token_is_no_token_for_it(http: httpx.Client) -> None:
    events = _post(http, "/events", TOO_LARGE, {**JSON, **ADMIN})
    preferences = _post(http, "/users/u_1/preferences", TOO_LARGE, {**JSON, **INGEST})

    assert events.status_code == preferences.status_code == 401
    assert "HERALD_INGEST_TOKEN" in events.json()["detail"]
    assert "HERALD_ADMIN_TOKEN" in preferences.json()["detail"]


def test_a_chunked_body_over_the_limit_is_answered_401_without_the_token(
    http: httpx.Client,
) -> None:
    before = _events_counted(http)

    answer = _post(http, "/events", iter([TOO_LARGE]), JSON)

    assert answer.status_code == 401, answer.text
    assert _events_counted(http) == before


def test_an_event_without_the_token_counts_nowhere(http: httpx.Client) -> None:
    before = _events_counted(http)

    answers = [
        http.post("/events", json=signup()),
        http.post("/events", content=b"{not json", headers=JSON),
        http.post("/events/batch", json={"events": [signup()]}),
    ]

    assert [answer.status_code for answer in answers] == [401, 401, 401]
    assert _events_counted(http) == before
