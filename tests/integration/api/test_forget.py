"""Forgetting a user through the API (`DELETE /users/{id}`), as the app's back end asks
it when a user closes their account or invokes their right to erasure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from tests.support.api_requests import ATTEMPT_3, guarded, payment_failed, signup
from tests.support.json_schema import schema_problems
from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, run_herald, wait_for
from tests.support.serving import sqlite_url


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


def test_a_stub_file_replaced_by_a_fifo_after_start_is_said_in_the_answer(tmp_path: Path) -> None:
    """`herald serve` refuses a FIFO for its outbox at start, but the path may be swapped
    for one while it runs: the erasure, committed, then failed on the file and the client
    got a bare `500 Internal Server Error`, not knowing the user was forgotten in the
    database, nor why the rest was not done. Through a real server, so that a request
    held on the FIFO would show as one with no answer."""
    outbox = tmp_path / "outbox.jsonl"
    url = sqlite_url(tmp_path)
    env = herald_environment(HERALD_OUTBOX_FILE=str(outbox))
    assert run_herald(["db", "upgrade", "--database", url], env=env, cwd=tmp_path).returncode == 0
    port = free_port()
    with HeraldProcess("api", log_dir=tmp_path) as api:
        api.start(["serve", "--port", str(port), "--database", url], env, cwd=tmp_path)
        base = f"http://127.0.0.1:{port}"
        api.wait_healthy(f"{base}/readyz")
        stored = httpx.post(f"{base}/events", json=signup(user="u_gone"), timeout=10)
        assert stored.status_code == 202, stored.text
        wait_for(outbox.exists, "the welcome email in the stub's file")
        outbox.unlink()
        os.mkfifo(outbox)

        answer = httpx.delete(f"{base}/users/u_gone", timeout=10)
        audit = httpx.get(f"{base}/audit/u_gone", timeout=10).json()

        assert answer.status_code == 500, answer.text
        assert answer.json()["detail"] == (
            "user 'u_gone' was forgotten in the database, but their sends could not be "
            f"removed from the stub provider's file {outbox}: it is a FIFO (a named pipe), "
            "not a regular file; name a file. Asked again once the file is fixed, Herald "
            "removes them"
        )
        assert answer.json()["forgotten"] == {
            "user_id": "u_gone",
            "events_deleted": 1,
            "traits_deleted": 2,
            "delivery_attempts_deleted": 1,
            "messages_redacted": 1,
            "messages_cancelled": 0,
            "messages_in_flight": 0,
            "outbox_file_lines_deleted": 0,
        }
        assert audit["events"] == [] and audit["user"]["forgotten_at"] is not None
        document = httpx.get(f"{base}/openapi.json", timeout=10).json()
        documented = document["paths"]["/users/{user_id}"]["delete"]["responses"]["500"]
        schema = documented["content"]["application/json"]["schema"]
        assert schema_problems(document, schema, answer.json()) == []
        # Fixed, with a send of theirs in it: asked again, the erasure reaches it.
        outbox.unlink()
        outbox.write_text('{"user_id": "u_gone"}\n{"user_id": "u_kept"}\n', encoding="utf-8")
        again = httpx.delete(f"{base}/users/u_gone", timeout=10)
        assert (again.status_code, again.json()["outbox_file_lines_deleted"]) == (200, 1)
        assert outbox.read_text(encoding="utf-8") == '{"user_id": "u_kept"}\n'
        # The operator, who can fix the file, is told as well.
        wait_for(
            lambda: "could not be removed from the stub provider's file" in api.output(),
            "the server's error line",
        )
