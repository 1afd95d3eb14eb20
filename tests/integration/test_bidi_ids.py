"""Ids holding a bidirectional override, embedding or isolate, which would make them
display as other ids in the audit, the CLI's tables and log lines, are refused over HTTP
as ids with control characters are; right-to-left text in values is kept as sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "u_\u202e21" displays as "u_12"


def signup(user: str, **overrides: Any) -> dict[str, Any]:
    event = {
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": "2025-11-01T10:00:00Z",
        "user_traits": {"email": "maria@example.com", "marketing_opt_in": True},
    }
    event.update(overrides)
    return event


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("field", "character", "named"),
    [
        ("user_id", RLO, "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("user_id", "\u2067", "U+2067 RIGHT-TO-LEFT ISOLATE"),
        ("event_id", "\u202a", "U+202A LEFT-TO-RIGHT EMBEDDING"),
    ],
)
def test_an_id_with_a_bidirectional_override_is_refused_naming_the_character(
    client: TestClient, field: str, character: str, named: str
) -> None:
    response = client.post("/events", json=signup("u_1", **{field: f"u_{character}21"}))

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {
            "loc": ["body", field],
            "msg": f"contains {named}, which is not allowed in an id: it can make the id "
            "display as another",
            "type": "invalid_id",
        }
    ]
    assert client.get("/audit/u_1").status_code == 404  # nothing stored


def test_a_batch_rejects_the_event_whose_id_has_an_override_and_takes_the_others(
    client: TestClient,
) -> None:
    events = [signup(f"u_{RLO}21", event_id="e1"), signup("u_2", event_id="e2")]

    response = client.post("/events/batch", json={"events": events})

    assert response.status_code == 200, response.text
    refused, taken = response.json()["results"]
    assert refused["status"] == "rejected"
    assert refused["errors"] == [
        {
            "loc": ["user_id"],
            "msg": "contains U+202E RIGHT-TO-LEFT OVERRIDE, which is not allowed in an id: "
            "it can make the id display as another",
            "type": "invalid_id",
        }
    ]
    assert taken["status"] == "accepted"
    assert client.get("/audit/u_2").status_code == 200


def test_right_to_left_text_and_marks_are_kept_where_they_are_text(client: TestClient) -> None:
    """Values are free text, where Arabic or Hebrew may need an override; the marks
    U+200E and U+200F reorder nothing of their own, and are taken in ids."""
    user = "\u05e9\u05e8\u05d4\u200f-7"  # a Hebrew name, a right-to-left mark, a number
    name = f"{RLO}\u0645\u0631\u064a\u0645\u202c (Maryam)"
    event = signup(user, user_traits={"first_name": name}, properties={"note": "\u2067x\u2069"})

    assert client.post("/events", json=event).status_code == 202

    audit = client.get(f"/audit/{user}").json()
    assert audit["user"]["traits"]["first_name"] == name
    assert audit["events"][0]["properties"] == {"note": "\u2067x\u2069"}


def test_an_override_in_a_path_id_is_answered_as_a_control_character_is(
    client: TestClient,
) -> None:
    """No user can have such an id: the audit finds nobody, and an unsubscribe is refused
    rather than stored for an id no event can carry, each naming the id escaped."""
    client.post("/events", json=signup("u_1"))
    override = "%E2%80%AE"

    audit = client.get(f"/audit/u_1{override}")
    preferences = client.post(f"/users/u_1{override}/preferences", json={"unsubscribed": []})

    assert audit.status_code == 404, audit.text
    assert audit.json()["detail"] == "unknown user 'u_1\\u202e'"
    assert preferences.status_code == 422, preferences.text
    assert preferences.json()["detail"] == [
        {
            "loc": ["path", "user_id"],
            "msg": "contains U+202E RIGHT-TO-LEFT OVERRIDE, which is not allowed in an id: "
            "it can make the id display as another",
            "type": "invalid_id",
        }
    ]
