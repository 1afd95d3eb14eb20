"""A user's traits are bounded: every event reads and rewrites its user's whole profile,
so events adding trait after trait must not make each later event of that user cost more."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from herald.service.profile_limit import MAX_PROFILE_BYTES, MAX_PROFILE_TRAITS

QUARTER = MAX_PROFILE_BYTES // 4  # a trait of this many characters: four fill a profile


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def signup(number: int, traits: dict[str, Any], user: str = "u_1") -> dict[str, Any]:
    return {
        "event_id": f"e{number}",
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": f"2025-11-01T10:00:{number:02d}Z",
        "user_traits": traits,
    }


def test_an_event_growing_the_profile_past_the_limit_is_refused_and_stores_nothing(
    client: TestClient,
) -> None:
    for number in range(3):
        sent = client.post("/events", json=signup(number, {f"note_{number}": "x" * QUARTER}))
        assert sent.status_code == 202

    refused = client.post("/events", json=signup(3, {"note_3": "x" * QUARTER}))

    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"] == ["body", "user_traits"] and error["type"] == "profile_full"
    assert f"past {MAX_PROFILE_BYTES:,} bytes of JSON" in error["msg"]
    audit = client.get("/audit/u_1").json()
    assert [event["event_id"] for event in audit["events"]] == ["e2", "e1", "e0"]
    assert "note_3" not in audit["user"]["traits"]


def test_a_full_profile_still_takes_events_that_do_not_grow_it(client: TestClient) -> None:
    for number in range(3):
        client.post("/events", json=signup(number, {f"note_{number}": "x" * QUARTER}))

    replaced = client.post("/events", json=signup(3, {"note_0": "y" * QUARTER}))
    without_traits = client.post("/events", json=signup(4, {}))

    assert replaced.status_code == 202 and without_traits.status_code == 202
    assert client.get("/audit/u_1").json()["user"]["traits"]["note_0"] == "y" * QUARTER


def test_a_batch_rejects_the_event_that_would_fill_the_profile_and_keeps_the_others(
    client: TestClient,
) -> None:
    events = [signup(number, {f"note_{number}": "x" * QUARTER}) for number in range(4)]
    events.append(signup(5, {"note_5": "x" * QUARTER}, user="u_2"))

    results = client.post("/events/batch", json={"events": events}).json()["results"]

    assert [r["status"] for r in results] == ["accepted"] * 3 + ["rejected", "accepted"]
    [error] = results[3]["errors"]
    assert error["loc"] == ["user_traits"] and error["type"] == "profile_full"
    assert len(client.get("/audit/u_1").json()["events"]) == 3


def test_an_event_adding_trait_names_past_the_limit_is_refused(client: TestClient) -> None:
    names = {f"t{number}": number for number in range(MAX_PROFILE_TRAITS)}
    assert client.post("/events", json=signup(0, names)).status_code == 202

    refused = client.post("/events", json=signup(1, {"one_more": 1}))
    updated = client.post("/events", json=signup(2, {"t0": "changed"}))

    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["type"] == "profile_full"
    assert f"or {MAX_PROFILE_TRAITS:,} names" in error["msg"]
    assert updated.status_code == 202
    traits = client.get("/audit/u_1").json()["user"]["traits"]
    assert len(traits) == MAX_PROFILE_TRAITS and traits["t0"] == "changed"


def test_an_event_sent_twice_in_a_batch_past_the_limit_is_refused_both_times(
    client: TestClient,
) -> None:
    # The second copy was answered "duplicate" of the first, which was never stored.
    events = [signup(number, {f"note_{number}": "x" * QUARTER}) for number in range(3)]
    too_many = signup(3, {"note_3": "x" * QUARTER})

    results = client.post("/events/batch", json={"events": [*events, too_many, too_many]})

    statuses = [r["status"] for r in results.json()["results"]]
    assert statuses == ["accepted"] * 3 + ["rejected", "rejected"]


def test_an_event_refused_in_a_batch_past_the_limit_leaves_its_id_to_another_payload(
    client: TestClient,
) -> None:
    # The refused event stored nothing, yet its id was taken for the rest of the batch:
    # the client's corrected event with that id was rejected as a conflict, and accepted
    # once sent alone.
    events = [signup(number, {f"note_{number}": "x" * QUARTER}) for number in range(3)]
    too_many = signup(3, {"note_3": "x" * QUARTER})
    corrected = signup(3, {"note_0": "y"})
    batch = [*events, too_many, corrected, corrected, too_many]

    results = client.post("/events/batch", json={"events": batch}).json()["results"]

    statuses = [r["status"] for r in results]
    assert statuses == ["accepted"] * 3 + ["rejected", "accepted", "duplicate", "rejected"]
    assert [e["type"] for e in results[3]["errors"]] == ["profile_full"]
    assert results[5]["decisions"] == results[4]["decisions"]
    assert [e["type"] for e in results[6]["errors"]] == ["conflict"]
    audit = client.get("/audit/u_1").json()
    assert [event["event_id"] for event in audit["events"]] == ["e3", "e2", "e1", "e0"]
    assert audit["user"]["traits"]["note_0"] == "y"
