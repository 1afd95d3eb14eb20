"""Posting events and batches: accepted with their decisions, repeated as duplicates, refused
one by one with what is wrong, and delivered once triggered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from herald.config import Settings
from tests.support.api_requests import ATTEMPT_3, payment_failed, signup
from tests.support.processes import wait_for


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


def test_a_conflict_on_an_event_id_the_client_sent_does_not_speak_of_a_derived_key(
    client: TestClient,
) -> None:
    # Told "without event_id, the key is ...", a client that sent one could read its id
    # as ignored.
    client.post("/events", json=payment_failed(event_id="e1"))
    other = payment_failed(event_id="e1", user_id="u_2")

    alone = client.post("/events", json=other).json()["detail"]
    [result] = client.post("/events/batch", json={"events": [other]}).json()["results"]

    assert alone == "event_id 'e1' was already used for a different payload"
    assert result["errors"] == [
        {"loc": ["event_id"], "msg": "already used for a different payload", "type": "conflict"}
    ]


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


def test_a_body_of_many_unknown_fields_is_told_the_first_and_how_many_more(
    client: TestClient,
) -> None:
    # Each was listed, with a "did you mean" worked out for it: 600,000 of them in a
    # batch blocked the API process for 16 s and were answered with 56 MiB.
    unknown = {f"field_{number}": 1 for number in range(5000)}
    event = {**signup(user="u_many"), **unknown}
    del event["user_id"]  # an error of a known field too, listed first

    alone = client.post("/events", json=event).json()["detail"]
    [item] = client.post("/events/batch", json={"events": [event]}).json()["results"]
    envelope = client.post("/events/batch", json={"events": [signup(user="u_many")], **unknown})
    preferences = client.post("/users/u_many/preferences", json={"unsubscribed": [], **unknown})

    told = {
        "alone": alone,
        "item": item["errors"],
        "envelope": envelope.json()["detail"],
        "preferences": preferences.json()["detail"],
    }
    assert envelope.status_code == preferences.status_code == 422
    assert {name: len(errors) for name, errors in told.items()} == dict.fromkeys(told, 101)
    assert [e["loc"] for e in alone[:3]] == [
        ["body", "user_id"],
        *[["body", name] for name in list(unknown)[:2]],
    ]
    assert [e["loc"] for e in item["errors"][:2]] == [["user_id"], ["field_0"]]
    assert [e["loc"][-1] for e in told["envelope"][:100]] == list(unknown)[:100]
    assert all(e["msg"].startswith("unknown field") for e in told["preferences"][:100])
    assert [errors[-1]["msg"] for errors in told.values()] == [
        "and 4,901 more errors, not listed (a 422 lists the first 100)"
    ] * 2 + ["and 4,900 more errors, not listed (a 422 lists the first 100)"] * 2
    assert [errors[-1]["type"] for errors in told.values()] == ["too_many_errors"] * 4
    assert client.get("/audit/u_many").status_code == 404


def test_an_array_of_events_is_told_the_shape_each_route_takes(client: TestClient) -> None:
    events = [signup(user="u_array")]

    alone = client.post("/events", json=events)
    batch = client.post("/events/batch", json=events)

    assert alone.status_code == batch.status_code == 422
    assert "/events/batch" in alone.json()["detail"][0]["msg"]
    assert '{"events": [...]}' in batch.json()["detail"][0]["msg"]
    assert client.get("/audit/u_array").status_code == 404


def test_a_body_sent_to_the_other_ingestion_route_is_told_where_it_goes(
    client: TestClient,
) -> None:
    event = signup(user="u_misrouted")

    alone = client.post("/events", json={"events": [event]})
    batch = client.post("/events/batch", json=event)

    assert alone.status_code == batch.status_code == 422
    [told] = [e["msg"] for e in alone.json()["detail"] if e["loc"] == ["body", "events"]]
    assert told == (
        'unknown field: this route takes one event; send a batch, {"events": [...]}, '
        "to /events/batch"
    )
    unknown = {e["msg"] for e in batch.json()["detail"] if e["type"] == "extra_forbidden"}
    assert unknown == {
        'unknown field: a batch is {"events": [...]}; send one event alone to /events'
    }
    assert client.get("/audit/u_misrouted").status_code == 404


def test_a_path_with_a_trailing_slash_is_told_the_path_not_redirected(client: TestClient) -> None:
    # Redirected, the event went again to a URL made of the Host header; a client that
    # follows no redirect saw an empty 307.
    event = signup(user="u_slash")

    posted = client.post("/events/", json=event, follow_redirects=False)
    batch = client.post("/events/batch/", json={"events": [event]}, follow_redirects=False)
    rules = client.get("/rules/", follow_redirects=False)
    unknown = client.get("/nowhere/", follow_redirects=False)

    assert [posted.status_code, batch.status_code, rules.status_code] == [404] * 3
    assert posted.json()["detail"] == ("Not Found: the path is /events, without the trailing slash")
    assert "the path is /events/batch," in batch.json()["detail"]
    assert "the path is /rules," in rules.json()["detail"]
    assert unknown.status_code == 404 and unknown.json()["detail"] == "Not Found"
    assert client.get("/audit/u_slash").status_code == 404


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


def test_a_retry_that_writes_a_number_differently_is_a_duplicate(client: TestClient) -> None:
    first = payment_failed(event_id="evt_num")
    retry = payment_failed(event_id="evt_num")
    retry["properties"] = {**first["properties"], "amount": 1425}  # as JavaScript writes 1425.0

    assert client.post("/events", json=first).status_code == 202
    again = client.post("/events", json=retry)

    assert again.status_code == 200 and again.json()["status"] == "duplicate"


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


def test_a_timestamp_is_kept_to_the_microsecond_and_its_further_digits_dropped(
    client: TestClient,
) -> None:
    # As the README says: two events without ids a fraction of a microsecond apart share
    # their key, and the second is the first's duplicate.
    first = client.post(
        "/events", json=signup(user="u_ns", event_timestamp="2025-11-01T10:00:00.123456789Z")
    )
    second = client.post(
        "/events", json=signup(user="u_ns", event_timestamp="2025-11-01T10:00:00.1234561Z")
    )

    assert [first.status_code, second.status_code] == [202, 200]
    [event] = client.get("/audit/u_ns").json()["events"]
    assert event["event_timestamp"] == "2025-11-01T10:00:00.123456Z"
