"""Timestamps sent with an offset are the instants they name: the nudge's 24-hour window
is held to the microsecond across offsets, in either arrival order, and a daily limit
counts the UTC day of the instant, not the day its offset shows."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api_requests import payment_failed, signup

PHONE = {"phone": "+351912345678"}


def link(user: str, event_timestamp: str) -> dict[str, Any]:
    return {
        "event_id": f"{user}_link",
        "user_id": user,
        "event_type": "link_bank_success",
        "event_timestamp": event_timestamp,
    }


def outcomes(client: TestClient, user: str, rule: str) -> list[str]:
    """The outcomes of ``rule``'s decisions on the user's events, earliest event first."""
    events = client.get(f"/audit/{user}").json()["events"]
    return [
        decision["outcome"]
        for event in reversed(events)
        for decision in event["decisions"]
        if decision["rule"] == rule
    ]


@pytest.mark.parametrize("link_arrives_first", [False, True], ids=["signup_first", "link_first"])
@pytest.mark.parametrize(
    ("link_at", "nudged"),
    [
        # 10:00 UTC on the next day, exactly 24 hours after the signup: inside.
        ("2025-11-02T15:30:00+05:30", True),
        # A microsecond past the window, in another offset: outside.
        ("2025-11-02T05:00:00.000001-05:00", False),
        # A microsecond before the signup: outside.
        ("2025-11-01T15:29:59.999999+05:30", False),
    ],
    ids=["at_24h", "24h_and_1us", "1us_before_signup"],
)
def test_the_nudge_window_is_held_to_the_microsecond_across_offsets(
    client: TestClient, link_at: str, nudged: bool, link_arrives_first: bool
) -> None:
    user = "u_offset"
    user_signup = signup(user=user, opt_in=True, event_id=f"{user}_signup")
    user_signup["user_traits"] |= PHONE  # signed up at 2025-11-01T10:00:00Z
    arrivals = [user_signup, link(user, link_at)]
    for event in reversed(arrivals) if link_arrives_first else arrivals:
        assert client.post("/events", json=event).status_code == 202

    messages = client.get(f"/audit/{user}").json()["messages"]
    nudges = [m for m in messages if m["rule"] == "BANK_LINK_NUDGE_SMS"]
    assert len(nudges) == (1 if nudged else 0)


def test_a_failure_late_in_the_evening_west_of_utc_counts_on_the_next_utc_day(
    client: TestClient,
) -> None:
    user = "u_west"
    # 2025-11-04T04:30:00Z, then an hour and a half later, both on 4 November (UTC).
    evening = payment_failed(user=user, event_id="f1", event_timestamp="2025-11-03T23:30:00-05:00")
    morning = payment_failed(user=user, event_id="f2", event_timestamp="2025-11-04T06:00:00Z")
    # 2025-11-03T23:59:59Z, written as the next morning in India: 3 November (UTC).
    late = payment_failed(user=user, event_id="f3", event_timestamp="2025-11-04T05:29:59+05:30")
    for event in (evening, morning, late):
        assert client.post("/events", json=event).status_code == 202

    keys = sorted(
        m["dedup_key"]
        for m in client.get(f"/audit/{user}").json()["messages"]
        if m["rule"] == "INSUFFICIENT_FUNDS_EMAIL"
    )
    assert keys == [
        f"INSUFFICIENT_FUNDS_EMAIL:{user}:2025-11-03",
        f"INSUFFICIENT_FUNDS_EMAIL:{user}:2025-11-04",
    ]
    assert outcomes(client, user, "INSUFFICIENT_FUNDS_EMAIL") == [
        "triggered",  # f3, the earliest instant
        "triggered",  # f1
        "suppressed",  # f2, on f1's UTC day
    ]
