"""Bodies and paths shaped almost like what the API takes, sent over real HTTP to Herald as
`herald serve` serves it, on SQLite: never a server error; every refusal a JSON body that
says what is wrong, leaving the events, messages and users as they were; and an event
accepted is the one the audit shows, its timestamp in UTC and its properties and traits
as sent."""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from herald.api.app import create_app
from herald.cli.http_protocol import RequestDeadlineProtocol
from herald.config import Settings
from herald.domain.timeutil import iso, parse_timestamp
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.api_requests import payment_failed_by
from tests.support.serving import served_on_a_thread, sqlite_url

TABLES = ("events", "messages", "users")
FIELDS = ("event_id", "user_id", "event_type", "event_timestamp", "properties", "user_traits")
EVENT_TYPES = ("signup_completed", "link_bank_success", "payment_initiated", "payment_failed")
TRAITS = ("email", "phone", "first_name", "country", "marketing_opt_in", "timezone")


class Served:
    """Herald on a port of its own, a client speaking HTTP to it, and its database file
    read directly."""

    def __init__(self, port: int, database: Path) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        self.database = database

    def counts(self) -> dict[str, int]:
        with sqlite3.connect(self.database) as connection:
            return {
                table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in TABLES
            }

    def send(self, method: str, path: str, body: bytes | None = None, **params: str) -> Any:
        """The answer to a request, checked: no server error, and a refusal says why
        in JSON and changes nothing."""
        before = self.counts()
        headers = {"content-type": "application/json"} if body is not None else {}
        answer = self.http.request(method, path, content=body, params=params, headers=headers)
        assert answer.status_code < 500, (method, path, body, answer.text)
        if answer.status_code >= 400:
            detail = answer.json()["detail"]
            assert detail, answer.text
            assert self.counts() == before, (method, path, body, answer.text)
        return answer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("fuzz_http")
    url = sqlite_url(folder)
    database = Database(url)
    upgrade(database)
    database.dispose()
    settings = Settings(database_url=url, outbox_file=str(folder / "outbox.jsonl"))
    app = create_app(settings)
    with served_on_a_thread(app, RequestDeadlineProtocol, log_config=None) as port:
        client = Served(port, folder / "herald.db")
        yield client
        client.http.close()


def fuzzed(examples: int) -> Any:
    """Few examples, no deadline (a request may wait for a commit): a few seconds each."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


users = (f"h{n}" for n in itertools.count())
# Strings a client could send that tests every check on text: empty, blank, NUL and other
# controls, bidirectional marks, a byte order mark, line separators, astral characters,
# lone surrogates, escapes, long ones.
odd_strings = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\x1b[31m",
        "\u202eevil",
        "\u200f",
        "\ufeff",
        "a\u2028b",
        "\U0010ffff",
        "\U0001d7d8",
        "é" * 129,
        "x" * 20_000,
        "\\u0000",
        "null",
        "\ud800",  # half a surrogate pair: sent escaped, as JSON can
        "a\udc00",
    ]
) | st.text(max_size=20)
odd_numbers = (
    st.sampled_from(
        [0, -0.0, 1e308, -1e308, 5e-324, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 3.0]
    )
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
)
json_values = st.recursive(
    st.none() | st.booleans() | odd_numbers | odd_strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_strings, inner, max_size=3),
    max_leaves=8,
)
# Timestamps in every form ISO 8601 and RFC 3339 allow, and some they do not.
odd_timestamps = st.sampled_from(
    [
        "2016-12-31T23:59:60Z",
        "2016-12-31T18:59:60-05:00",
        "2016-12-31T22:59:60Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-14:00",
        "1900-01-01T00:00:00Z",
        "1900-01-01T00:00:00+00:01",
        "2025-10-31T19:24:11+14:00",
        "2025-10-31T19:24:11-12:00",
        "2025-10-31T19:24:11.123456789Z",
        "2025-10-31t19:24:11z",
        "2025-10-31 19:24:11Z",
        " 2025-10-31T19:24:11Z ",
        "2025-10-31T19:24:11+2400",
        "2025-10-31T19:24:11+0530",
        "2025-10-31T19:24:11,5Z",
        "2025-10-31",
        "2025-02-29T00:00:00Z",
        "2025-10-31T24:00:00Z",
        "20251031T192411Z",
        "2025-10-31T19:24:11Z\n",
    ]
) | st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat())
ids = (
    st.sampled_from(["e" * 128, "e" * 129, "é" * 128, "\U0001d7d8" * 128, " e", "e\t"])
    | odd_strings
)


@st.composite
def near_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of any type, then up to four of its fields, properties or traits
    replaced (or removed) by values of the wrong type, size or form."""
    event = payment_failed_by(next(users))
    event["event_type"] = draw(st.sampled_from(EVENT_TYPES))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        field = draw(st.sampled_from((*FIELDS, "property", "trait", "unknown")))
        if field == "event_timestamp":
            event[field] = draw(odd_timestamps | json_values)
        elif field == "event_id":
            event[field] = draw(ids | json_values)
        elif field == "property" and isinstance(event.get("properties"), dict):
            name = draw(st.sampled_from(["amount", "attempt_number", "failure_reason"]))
            event["properties"][draw(st.just(name) | odd_strings)] = draw(json_values)
        elif field == "trait" and isinstance(event.get("user_traits"), dict):
            event["user_traits"][draw(st.sampled_from(TRAITS) | odd_strings)] = draw(json_values)
        elif field == "unknown":
            event[draw(odd_strings)] = draw(json_values)
        elif field in FIELDS and draw(st.booleans()):
            event.pop(field, None)
        elif field in FIELDS:
            event[field] = draw(json_values)
    return event


def assert_in_the_audit(served: Served, sent: dict[str, Any], event_id: str) -> None:
    """The event ``sent`` and accepted as ``event_id`` is in its user's audit as sent: its
    time in UTC, its properties and traits the same JSON (an integer property sent as
    ``3.0`` is ``3``, as its declaration reads it)."""
    path = quote(sent["user_id"], safe="")
    audit = served.send("GET", f"/audit/{path}", limit="1000").json()
    [stored] = [event for event in audit["events"] if event["event_id"] == event_id]
    assert stored["event_type"] == sent["event_type"]
    assert stored["event_timestamp"] == iso(parse_timestamp(sent["event_timestamp"]))
    assert stored["properties"] == (sent.get("properties") or {})
    assert stored["user_traits"] == (sent.get("user_traits") or {})


@example(event={**payment_failed_by("h_leap"), "event_timestamp": "2016-12-31T18:59:60-05:00"})
@example(
    event={**payment_failed_by("h_nanos"), "event_timestamp": "2025-10-31t19:24:11.123456789z"}
)
@example(event={**payment_failed_by("h_far_east"), "event_timestamp": "2025-10-31 19:24:11+14:00"})
@example(event={**payment_failed_by("h_id"), "event_id": "\U0001d7d8" * 128})
@example(
    event={
        **payment_failed_by("h_numbers"),
        "properties": {
            "amount": 1e308,
            "attempt_number": 2**64 - 1,
            "failure_reason": "\u202e\U0010ffff",
            "negative_zero": -0.0,
            "tiny": 5e-324,
            "nested": [[[{"": None}]]],
        },
    }
)
@given(event=near_events())
@fuzzed(120)
def test_an_event_is_refused_clearly_with_nothing_stored_or_stored_as_sent(
    served: Served, event: dict[str, Any]
) -> None:
    answer = served.send("POST", "/events", json.dumps(event).encode())
    assert answer.status_code in {200, 202, 409, 422}, answer.text
    if answer.status_code == 202:
        assert_in_the_audit(served, event, answer.json()["event_id"])


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# An event nested past what the JSON parser reads makes the batch be read by another
# parser, one that takes a lone surrogate (\ud800), which cannot be written back as
# UTF-8: one in an event after it made the whole batch a 500.
TOO_DEEP = {**payment_failed_by("h_deep"), "properties": {"deep": _nested(205)}}


@example(batch=[TOO_DEEP, {**payment_failed_by("h_s1"), "event_id": "e\ud800"}])
@example(batch=[TOO_DEEP, {**payment_failed_by("h_s2"), "properties": {"amount": "\ud800"}}])
@example(batch=[TOO_DEEP, {**payment_failed_by("h_s3"), "user_traits": {"\udc00": 1}}])
@given(batch=st.lists(near_events() | json_values, min_size=1, max_size=6))
@fuzzed(60)
def test_a_batch_answers_each_event_and_stores_exactly_the_accepted_ones(
    served: Served, batch: list[Any]
) -> None:
    before = served.counts()
    answer = served.send("POST", "/events/batch", json.dumps(batch_of(batch)).encode())
    if answer.status_code == 422:  # JSON Herald's parser refuses: the batch as a whole
        assert served.counts() == before
        return
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [result["index"] for result in results] == list(range(len(batch)))
    accepted = [
        (sent, result["event_id"])
        for sent, result in zip(batch, results, strict=True)
        if result["status"] == "accepted"
    ]
    for result in results:
        assert result["status"] in {"accepted", "duplicate", "rejected"}
        assert result["status"] != "rejected" or result["errors"], result
    assert served.counts()["events"] == before["events"] + len(accepted)
    for sent, event_id in accepted:
        assert_in_the_audit(served, sent, event_id)


def batch_of(events: list[Any]) -> dict[str, Any]:
    return {"events": events}


path_ids = st.sampled_from(
    ["h0", "preferences", ".", "..", "a/b", "%", "x" * 128, "x" * 129, " a", "\u202e", "é"]
) | st.text(min_size=1, max_size=140)
preference_bodies = json_values | st.fixed_dictionaries(
    {
        "unsubscribed": st.lists(
            st.sampled_from(["email", "SMS", "Marketing", "all", "ALL", "push", ""]) | json_values,
            max_size=4,
        )
    }
)
limits = st.sampled_from(["0", "1", "1000", "1001", "-1", "", "1e3", "1.0", " 5", "9" * 30])
cursors = st.text(max_size=40) | st.sampled_from(["MTox", "MTox" * 40, "=", "%00"])


@given(
    user=path_ids,
    body=preference_bodies,
    limit=st.none() | limits,
    cursor=st.none() | cursors,
    escaped=st.booleans(),
)
@fuzzed(60)
def test_an_odd_id_body_limit_or_cursor_is_a_clear_client_error(
    served: Served, user: str, body: Any, limit: str | None, cursor: str | None, escaped: bool
) -> None:
    path = quote(user, safe="" if escaped else "/")
    answer = served.send("POST", f"/users/{path}/preferences", json.dumps(body).encode())
    # 404 and 405: a "/" or a dot segment in an id sent as is makes another path.
    assert answer.status_code in {200, 400, 404, 405, 422}, answer.text
    params = {
        name: value for name, value in (("limit", limit), ("cursor", cursor)) if value is not None
    }
    answer = served.send("GET", f"/audit/{path}", **params)
    assert answer.status_code in {200, 400, 404, 422}, answer.text
    answer = served.send("DELETE", f"/users/{path}")
    assert answer.status_code in {200, 400, 404, 405, 422}, answer.text


def test_a_lone_surrogate_beside_a_too_deep_event_refuses_the_batch_whole(
    served: Served,
) -> None:
    before = served.counts()
    batch = [
        TOO_DEEP,
        payment_failed_by("h_beside"),
        {**payment_failed_by("h_lone"), "event_id": "\ud800"},
    ]
    answer = served.send("POST", "/events/batch", json.dumps(batch_of(batch)).encode())
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert error["type"] == "json_invalid" and "surrogate" in error["msg"], error
    assert served.counts() == before


def _written_otherwise(value: Any, rewrite: random.Random) -> Any:
    """``value`` as another client could write the same JSON: each object's keys in
    another order, and some whole numbers an integer could hold written the other way
    (``10`` as ``10.0``, ``10.0`` as ``10``)."""
    if isinstance(value, dict):
        items = list(value.items())
        rewrite.shuffle(items)
        return {key: _written_otherwise(item, rewrite) for key, item in items}
    if isinstance(value, list):
        return [_written_otherwise(item, rewrite) for item in value]
    whole = -(2**63) <= value < 2**64 if type(value) in (int, float) else False
    if type(value) is int and whole and float(value) == value and rewrite.random() < 0.7:
        return float(value)
    if type(value) is float and whole and value.is_integer() and rewrite.random() < 0.7:
        return int(value)
    return value


storable_strings = st.text(max_size=10).filter(lambda text: "\x00" not in text)
storable_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-(2**63), 2**63, 2**64 - 1, -0.0, 2**53 + 1]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(storable_strings, inner, max_size=3)
    ),
    max_leaves=8,
)


@example(properties={"low": -(2**63)}, traits={}, seed=0, zone=ZoneInfo("UTC"))
@example(properties={"high": 2**63}, traits={"top": 2**64 - 1}, seed=0, zone=ZoneInfo("UTC"))
@given(
    properties=st.dictionaries(
        storable_strings.filter(lambda name: name != "amount"), storable_values, max_size=4
    ),
    traits=st.dictionaries(storable_strings, storable_values, max_size=4),
    seed=st.integers(min_value=0, max_value=2**16),
    zone=st.timezones(),
)
@fuzzed(60)
def test_an_event_sent_again_written_otherwise_is_a_duplicate(
    served: Served, properties: Any, traits: Any, seed: int, zone: ZoneInfo
) -> None:
    moment = datetime(2025, 10, 31, 19, 24, 11, 123456, tzinfo=UTC)
    event = {
        "user_id": next(users),
        "event_type": "payment_initiated",
        "event_timestamp": moment.isoformat(),
        "properties": properties,
        "user_traits": traits,
    }
    first = served.send("POST", "/events", json.dumps(event).encode())
    assert first.status_code == 202, first.text
    again = _written_otherwise(event, random.Random(seed))
    again["event_timestamp"] = moment.astimezone(zone).isoformat()
    answer = served.send("POST", "/events", json.dumps(again).encode())
    assert answer.status_code == 200, (event, again, answer.text)
    assert answer.json()["status"] == "duplicate"
