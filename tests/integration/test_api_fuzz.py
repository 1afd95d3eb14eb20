"""Whatever a client sends, the answer is a clear status, never a server error, and an
event that is refused leaves nothing behind. Hypothesis mutates a valid event field by
field (wrong types, odd strings, huge numbers, missing fields) and sends it as is."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from herald.api.app import create_app
from herald.config import Settings
from herald.service.audit import encode_cursor
from tests.support.api_requests import payment_failed_by

CLIENT_ANSWERS = {200, 202, 409, 422}
FIELDS = ("event_id", "user_id", "event_type", "event_timestamp", "properties", "user_traits")
MISSING = object()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
odd_strings = st.sampled_from(
    [
        "",
        " ",
        "2025-13-40T99:99:99Z",
        "2025-10-31T19:24:11+25:00",
        "yesterday",
        "0",
        "\x00",
        "é" * 200,
        "a" * 400 + "@example.com",  # longer than any stored address
    ]
)
property_values = json_values | odd_strings | st.sampled_from([-1, 0, 2**64, -0.0, 1e308])
# Any moment from year 1 to 9999 with any offset: rule windows reach a day either side.
timestamps = st.datetimes(timezones=st.timezones()).map(
    lambda moment: moment.isoformat()
) | st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00"])
event_types = st.sampled_from(
    ["signup_completed", "link_bank_success", "payment_initiated", "payment_failed"]
)


@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[str, str | None, Any]]:
    """Changes to apply: (field, property or None, new value or MISSING to delete). The
    first sets the event type, so that every type's rules see the other changes."""
    changes: list[tuple[str, str | None, Any]] = [("event_type", None, draw(event_types))]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        field = draw(st.sampled_from(FIELDS))
        if field == "event_timestamp" and draw(st.booleans()):
            changes.append((field, None, draw(timestamps)))
        elif field == "properties" and draw(st.booleans()):
            name = draw(st.sampled_from(["amount", "attempt_number", "failure_reason"]))
            changes.append((field, name, draw(property_values | st.just(MISSING))))
        else:
            changes.append((field, None, draw(json_values | odd_strings | st.just(MISSING))))
    return changes


def mutated(user: str, changes: list[tuple[str, str | None, Any]]) -> dict[str, Any]:
    event = payment_failed_by(user)
    for field, name, value in changes:
        target: Any = event
        key: str = field
        if name is not None:
            if not isinstance(event.get(field), dict):
                continue
            target, key = event[field], name
        if value is MISSING:
            target.pop(key, None)
        else:
            target[key] = value
    return event


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def fuzzed(examples: int) -> Any:
    """Settings for a property test that talks to the app: no deadline, as a request may
    wait for a commit."""
    return hypothesis_settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def test_no_event_body_makes_a_server_error_and_a_refused_one_stores_nothing(
    client: TestClient,
) -> None:
    users = (f"fz_{n}" for n in itertools.count())

    @given(changes=mutations())
    @fuzzed(150)
    def check(changes: list[tuple[str, str | None, Any]]) -> None:
        user = next(users)
        event = mutated(user, changes)
        response = client.post("/events", json=event)
        assert response.status_code in CLIENT_ANSWERS, (event, response.text)
        if response.status_code == 422 and event.get("user_id") == user:
            assert client.get(f"/audit/{user}").status_code == 404

    check()


def test_a_batch_of_mutated_events_answers_each_one_and_never_fails_whole(
    client: TestClient,
) -> None:
    users = (f"fb_{n}" for n in itertools.count())

    @given(batch=st.lists(mutations() | json_values, min_size=1, max_size=8))
    @fuzzed(60)
    def check(batch: list[Any]) -> None:
        events = [
            mutated(next(users), item)
            if isinstance(item, list) and item and isinstance(item[0], tuple)
            else item
            for item in batch
        ]
        response = client.post("/events/batch", json={"events": events})
        assert response.status_code == 200, (events, response.text)
        results = response.json()["results"]
        assert [r["index"] for r in results] == list(range(len(events)))
        assert {r["status"] for r in results} <= {"accepted", "duplicate", "rejected"}

    check()


def test_any_user_id_in_a_path_is_answered_without_a_server_error(client: TestClient) -> None:
    @given(user=st.text(min_size=1, max_size=200))
    @fuzzed(80)
    def check(user: str) -> None:
        path = quote(user, safe="")
        assert client.get(f"/audit/{path}").status_code in {404, 422}
        preferences = {"unsubscribed": ["email"]}
        answer = client.post(f"/users/{path}/preferences", json=preferences)
        # 404: a "/" in the id makes a path no route has. 405: an id of "." or ".." is
        # resolved by the client, and "/users/./preferences" is "/users/preferences", the
        # path of a user named "preferences", which takes DELETE only.
        assert answer.status_code in {200, 404, 405, 422}, answer.text
        forgotten = client.delete(f"/users/{path}")
        assert forgotten.status_code in {200, 404, 422}, forgotten.text

    check()


def test_any_audit_cursor_is_a_page_or_a_400(client: TestClient) -> None:
    client.post("/events", json=payment_failed_by("cursor_user"))

    @given(
        cursor=st.text(min_size=1, max_size=60)
        | st.tuples(st.integers(), st.integers()).map(
            lambda pair: encode_cursor("cursor_user", *pair)
        )
    )
    @fuzzed(80)
    def check(cursor: str) -> None:
        answer = client.get("/audit/cursor_user", params={"cursor": cursor})
        assert answer.status_code in {200, 400}, answer.text

    check()
