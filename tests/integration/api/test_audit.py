"""The audit of a user: its decisions and messages, its pages and their cursors, the ids a
path may hold, and a database out of reach under it."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from herald.service.audit import MAX_PAGE_BYTES
from tests.support.api_requests import payment_failed, signup
from tests.support.ports import free_port


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
    untouched = client.get("/audit/Jos%C3%A9").json()["user"]["preferences"]
    assert untouched == {"unsubscribed": [], "updated_at": None, "unsubscribed_at": {}}


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


def test_an_audit_page_of_text_beyond_ascii_stops_at_its_byte_bound_not_its_characters(
    client: TestClient,
) -> None:
    """Two bytes a character in UTF-8: counted by characters, a page of such events held
    twice the MAX_PAGE_BYTES of JSON the README promises."""
    note = "\u00e9" * 450_000  # 900,000 bytes of UTF-8
    per_page = MAX_PAGE_BYTES // len(note.encode())
    for n in range(per_page + 3):
        timestamp = f"2025-10-01T10:{n:02d}:00Z"
        properties = {**payment_failed()["properties"], "note": note}
        answer = client.post(
            "/events", json=payment_failed(event_timestamp=timestamp, properties=properties)
        )
        assert answer.status_code == 202, answer.text

    first = client.get("/audit/u_1?limit=1000")

    assert len(first.json()["events"]) == per_page
    assert len(first.content) < MAX_PAGE_BYTES + 1024 * 1024


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


def test_an_audit_page_lists_the_message_a_suppression_names_with_its_status(
    client: TestClient,
) -> None:
    """A support agent reading why today's second failure sent nothing is told "held by
    message msg_...": whether that message reached the user (sent, or a dead letter, or
    cancelled) is the answer they need, and it was on another page, or none."""
    first_failure = payment_failed(user="u_9", event_id="pf1")
    again = payment_failed(user="u_9", event_id="pf2", event_timestamp="2025-10-31T20:00:00Z")
    client.post("/events", json=first_failure)
    client.post("/events", json=again)

    page = client.get("/audit/u_9?limit=1").json()

    assert [e["event_id"] for e in page["events"]] == ["pf2"]
    suppressed = [d for d in page["events"][0]["decisions"] if d["outcome"] == "suppressed"]
    assert [d["rule"] for d in suppressed] == ["INSUFFICIENT_FUNDS_EMAIL"]
    holder = suppressed[0]["message_id"]
    assert holder in suppressed[0]["reason"]
    listed = {m["message_id"]: m for m in page["messages"]}
    assert listed[holder]["event_id"] == "pf1"
    assert listed[holder]["status"] in {"pending", "sending", "sent"}


def test_an_unknown_user_has_no_audit(client: TestClient) -> None:
    assert client.get("/audit/nobody").status_code == 404


def test_an_unknown_user_has_no_audit_whatever_cursor_comes_with_the_id(
    client: TestClient,
) -> None:
    """A mistyped id sent with the cursor of the user meant: told the cursor was another
    user's, a support agent could take the id for one Herald knows."""
    for day in range(1, 4):
        client.post("/events", json=payment_failed(event_timestamp=f"2025-10-0{day}T10:00:00Z"))
    cursor = client.get("/audit/u_1?limit=1").json()["next_cursor"]

    answer = client.get("/audit/u_l", params={"cursor": cursor})

    assert answer.status_code == 404, answer.text
    assert answer.json()["detail"] == "unknown user 'u_l'"


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
