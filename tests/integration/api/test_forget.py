"""Forgetting a user through the API (`DELETE /users/{id}`), as the app's back end asks
it when a user closes their account or invokes their right to erasure."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from tests.support.api_requests import ATTEMPT_3, guarded, payment_failed, signup
from tests.support.processes import wait_for


def _sent(client: TestClient, user: str, count: int) -> None:
    def all_sent() -> bool:
        messages = client.get(f"/audit/{user}").json()["messages"]
        return len(messages) == count and all(m["status"] == "sent" for m in messages)

    wait_for(all_sent, f"{count} messages of {user} sent")


def test_a_forgotten_user_s_audit_holds_nothing_personal(client: TestClient) -> None:
    client.post("/events", json=signup(user="u_gone", event_id="s1"))
    client.post("/events", json=payment_failed(user="u_gone", properties=ATTEMPT_3))
    client.post("/events", json=signup(user="u_kept", event_id="s2"))
    _sent(client, "u_gone", 3)

    answer = client.delete("/users/u_gone")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "user_id": "u_gone",
        "events_deleted": 2,
        "traits_deleted": 3,  # email, country, marketing_opt_in: said, not left to guess
        "delivery_attempts_deleted": 3,
        "messages_redacted": 3,
        "messages_cancelled": 0,
        "messages_in_flight": 0,
        "outbox_file_lines_deleted": 2,
    }
    audit = client.get("/audit/u_gone").json()
    assert audit["events"] == [] and audit["user"]["traits"] == {}
    assert audit["user"]["history_pruned_before"] is not None
    # Told apart from a retention prune, which leaves an audit much like it: the user asked.
    assert audit["user"]["forgotten_at"] == audit["user"]["history_pruned_before"]
    assert client.get("/audit/u_kept").json()["user"]["forgotten_at"] is None
    text = json.dumps(audit)
    # The amount as a property and as the email wrote it: "12.5" alone is in a time such
    # as 11:16:12.53Z now and then.
    for personal in ("u_gone@example.com", "maria@example.com", '"amount"', "of 12.50", "PT"):
        assert personal not in text, personal
    assert [m["status"] for m in audit["messages"]] == ["sent"] * 3
    # Their texts say what happened to them: forgotten, not pruned.
    for message in audit["messages"]:
        assert (message["subject"], message["body"]) == ("", "(forgotten at the user's request)")
    assert "u_kept@example.com" in json.dumps(client.get("/audit/u_kept").json())


def test_a_forgotten_user_s_event_sent_again_sends_nothing(client: TestClient) -> None:
    """The client's retry of an old request, or a replay of its queue, is stored again,
    but every rule skips it: decided anew, a rule without a limit would message a user
    who asked to be forgotten."""
    client.post("/events", json=signup(user="u_gone", event_id="s1"))
    _sent(client, "u_gone", 1)
    client.delete("/users/u_gone")

    again = client.post("/events", json=signup(user="u_gone", event_id="s1"))

    assert again.status_code == 202  # its first copy is gone with the rest
    decisions = again.json()["decisions"]
    assert {d["rule"] for d in decisions} == {"WELCOME_EMAIL", "BANK_LINK_NUDGE_SMS"}
    for decision in decisions:
        assert decision["outcome"] == "skipped" and "history before" in decision["reason"]
    assert len(client.get("/audit/u_gone").json()["messages"]) == 1  # the redacted one


def test_a_forgotten_user_s_old_event_sent_again_brings_none_of_their_data_back(
    client: TestClient,
) -> None:
    """A client's retry, or a replayed queue, after the erasure: its email went back into
    the forgotten user's profile and the stored event, undoing the erasure for it."""
    client.post("/events", json=signup(user="u_gone", event_id="s1"))
    client.post("/events", json=payment_failed(user="u_gone", event_id="p1", properties=ATTEMPT_3))
    client.delete("/users/u_gone")

    again = client.post("/events", json=signup(user="u_gone", event_id="s1"))
    late = client.post("/events", json=payment_failed(user="u_gone", properties=ATTEMPT_3))

    assert (again.status_code, late.status_code) == (202, 202)
    audit = client.get("/audit/u_gone").json()
    assert audit["user"]["traits"] == {}
    assert [(e["event_id"], e["properties"], e["user_traits"]) for e in audit["events"]] == [
        ("s1", {}, {}),
        (late.json()["event_id"], {}, {}),
    ]
    text = json.dumps(audit)
    for personal in ("u_gone@example.com", "12.5", 'INSUFFICIENT_FUNDS"'):
        assert personal not in text, personal
    for event in audit["events"]:
        for decision in event["decisions"]:
            assert decision["outcome"] == "skipped"
            assert "its properties and traits are not kept" in decision["reason"]
            # Not to be read as a retention prune: the user asked, and when.
            forgotten = audit["user"]["forgotten_at"]
            assert (
                f"(the user was forgotten at their request at {forgotten})" in (decision["reason"])
            )
    # Still the same event to the client's next retry: a duplicate, not a conflict.
    repeat = client.post("/events", json=signup(user="u_gone", event_id="s1"))
    assert (repeat.status_code, repeat.json()["status"]) == (200, "duplicate")


def test_forgetting_a_user_removes_their_sends_from_the_stub_s_file(
    client: TestClient, settings: Settings
) -> None:
    """The development stub writes every send in full to outbox.jsonl: the user's email
    address, phone number, name and texts stayed there after the erasure."""
    client.post("/events", json=signup(user="u_gone", event_id="s1"))
    client.post("/events", json=payment_failed(user="u_gone", properties=ATTEMPT_3))
    client.post("/events", json=signup(user="u_kept", event_id="s2"))
    _sent(client, "u_gone", 3)
    _sent(client, "u_kept", 1)
    outbox = Path(str(settings.outbox_file))
    assert "u_gone@example.com" in outbox.read_text(encoding="utf-8")

    answer = client.delete("/users/u_gone")

    assert answer.json()["outbox_file_lines_deleted"] == 2  # the alert is only logged
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    assert [line["user_id"] for line in lines] == ["u_kept"]
    assert "u_gone" not in outbox.read_text(encoding="utf-8")
    assert client.delete("/users/u_gone").json()["outbox_file_lines_deleted"] == 0


def test_forgetting_an_unknown_user_is_a_404_and_creates_nobody(client: TestClient) -> None:
    answer = client.delete("/users/nobody")

    assert answer.status_code == 404
    assert answer.json()["detail"] == "unknown user 'nobody'"
    assert client.get("/audit/nobody").status_code == 404


def test_forgetting_takes_the_admin_token(database_url: str, tmp_path: Path) -> None:
    settings = guarded(database_url, tmp_path, admin_token="admin-secret")
    with TestClient(create_app(settings)) as client:
        client.post("/events", json=signup(user="u_1"))

        refused = client.delete("/users/u_1")
        forgotten = client.delete("/users/u_1", headers={"Authorization": "Bearer admin-secret"})

    assert (refused.status_code, forgotten.status_code) == (401, 200)
