"""An event dated ahead of the server's clock by more than a sender's clock can be off is
refused: its traits would otherwise outrank everything the user says until that time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from herald.domain.timeutil import iso
from tests.support.api_requests import payment_failed, signup


def _from_now(**delta: float) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


def test_an_event_dated_next_year_is_refused_naming_the_clock_and_stores_nothing(
    client: TestClient,
) -> None:
    response = client.post("/events", json=signup(event_timestamp=_from_now(days=365)))

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "event_timestamp"]
    assert error["type"] == "future_timestamp"
    assert " is 36" in error["msg"] and " days ahead of Herald's clock (" in error["msg"]
    assert "at most 5 minutes in the future (HERALD_CLOCK_SKEW)" in error["msg"]
    assert client.get("/audit/u_1").status_code == 404


def test_an_event_a_little_ahead_as_a_fast_clock_dates_it_is_accepted(client: TestClient) -> None:
    response = client.post("/events", json=signup(event_timestamp=_from_now(minutes=2)))

    assert response.status_code == 202


def test_a_batch_refuses_its_future_event_alone(client: TestClient) -> None:
    events = [
        payment_failed(event_id="now"),
        payment_failed(event_id="later", event_timestamp=_from_now(hours=3)),
    ]

    results = client.post("/events/batch", json={"events": events}).json()["results"]

    assert [item["status"] for item in results] == ["accepted", "rejected"]
    [error] = results[1]["errors"]
    assert error["loc"] == ["event_timestamp"] and " is 2 hours ahead " in error["msg"]


def test_a_later_opt_out_wins_over_an_opt_in_a_wrong_clock_dated_ahead(
    client: TestClient,
) -> None:
    """The harm refused: an opt-in dated next year would have outranked the opt-out the
    user sends today, and the welcome email gone out against it."""
    ahead = signup(event_id="ahead", event_timestamp=_from_now(days=300))
    client.post("/events", json=ahead)
    opt_out = payment_failed(event_id="today", event_timestamp=_from_now(seconds=-1))
    opt_out["user_traits"] = {"email": "u_1@example.com", "marketing_opt_in": False}
    client.post("/events", json=opt_out)

    audit = client.get("/audit/u_1").json()

    assert audit["user"]["traits"]["marketing_opt_in"] is False
    assert "WELCOME_EMAIL" not in {message["rule"] for message in audit["messages"]}


def test_the_skew_taken_is_a_setting(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        database_url=database_url, outbox_file=str(tmp_path / "o.jsonl"), clock_skew=7200
    )
    with TestClient(create_app(settings)) as client:
        accepted = client.post("/events", json=signup(event_timestamp=_from_now(hours=1)))
        refused = client.post("/events", json=signup(event_timestamp=_from_now(hours=3)))

    assert accepted.status_code == 202
    assert refused.status_code == 422
    assert "at most 2 hours in the future" in refused.json()["detail"][0]["msg"]
