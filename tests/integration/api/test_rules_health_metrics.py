"""What the service says of itself: the rule set in force, health and readiness, and the
metrics of events, decisions and the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from tests.support.api_requests import ATTEMPT_3, payment_failed, signup


def test_health_answers_head_as_load_balancers_ask(client: TestClient) -> None:
    assert client.head("/healthz").status_code == 200
    assert client.head("/readyz").status_code == 200


def test_the_rules_endpoint_shows_the_active_rule_set(client: TestClient) -> None:
    rules = client.get("/rules").json()
    assert len(rules["version"]) == 12
    assert [r["id"] for r in rules["rules"]] == [
        "WELCOME_EMAIL",
        "BANK_LINK_NUDGE_SMS",
        "INSUFFICIENT_FUNDS_EMAIL",
        "HIGH_RISK_ALERT",
    ]


def test_the_rules_endpoint_shows_each_property_schema_whole(
    settings: Settings, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events:\n"
        "  payment_failed:\n"
        "    properties:\n"
        "      amount: {type: number, required: true, minimum: 0, maximum: 10000}\n"
        "      failure_reason: {type: string, enum: [INSUFFICIENT_FUNDS, CARD_DECLINED]}\n"
        "rules:\n"
        "  - {id: BIG_FAILURE, trigger: payment_failed, channel: internal,\n"
        "     when: event.properties.amount > 5000}\n",
        encoding="utf-8",
    )
    with TestClient(create_app(settings.model_copy(update={"rules": str(rules)}))) as client:
        shown = client.get("/rules").json()

    assert shown["event_types"]["payment_failed"]["properties"] == {
        "amount": {
            "type": "number",
            "required": True,
            "minimum": 0,
            "maximum": 10000,
            "enum": None,
        },
        "failure_reason": {
            "type": "string",
            "required": False,
            "minimum": None,
            "maximum": None,
            "enum": ["INSUFFICIENT_FUNDS", "CARD_DECLINED"],
        },
    }


def test_the_rules_endpoint_shows_the_traits_the_rule_file_declares(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    shipped = client.get("/rules").json()["traits"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events:\n"
        "  signup_completed: {}\n"
        "traits:\n"
        "  email: string\n"
        "  loyalty_points: integer\n"
        "rules:\n"
        "  - {id: LOYAL, trigger: signup_completed, channel: internal,\n"
        "     when: has(user.loyalty_points) && user.loyalty_points > 100}\n",
        encoding="utf-8",
    )
    with TestClient(create_app(settings.model_copy(update={"rules": str(rules)}))) as other:
        declared = other.get("/rules").json()["traits"]

    assert shipped == {
        "email": "string",
        "phone": "string",
        "first_name": "string",
        "country": "string",
        "marketing_opt_in": "boolean",
        "risk_segment": "string",
        "timezone": "string",
    }
    assert declared == {"email": "string", "loyalty_points": "integer"}


def test_health_readiness_and_metrics_answer(client: TestClient) -> None:
    client.post("/events", json=payment_failed(event_id="m1"))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    metrics = client.get("/metrics").text
    assert 'herald_events_total{event_type="payment_failed",status="accepted"} 1.0' in metrics
    assert "herald_outbox_backlog" in metrics


def test_the_outbox_gauge_shows_each_unfinished_status_at_zero_when_no_message_has_it(
    settings: Settings,
) -> None:
    """A status whose series vanished (the last dead letter re-queued) left a graph at its
    last count."""
    with TestClient(create_app(settings.model_copy(update={"dispatcher": False}))) as client:
        client.post("/events", json=payment_failed(event_id="g1"))
        metrics = client.get("/metrics").text

    assert 'herald_messages{status="pending"} 1.0' in metrics
    assert 'herald_messages{status="sending"} 0.0' in metrics
    assert 'herald_messages{status="failed"} 0.0' in metrics


def test_the_metrics_show_how_many_events_each_commit_held(client: TestClient) -> None:
    batch = [payment_failed(event_id=f"c{n}") for n in range(3)] + [{"not": "an event"}]
    client.post("/events/batch", json={"events": batch})
    client.post("/events", json=payment_failed(event_id="c-single"))

    metrics = client.get("/metrics").text

    # The batch is one transaction of its three valid events; the single event another.
    assert "herald_commit_events_count 2.0" in metrics
    assert "herald_commit_events_sum 4.0" in metrics
    assert 'herald_commit_events_bucket{le="2.0"} 1.0' in metrics


def test_a_batch_counts_each_event_and_decision_under_its_own_series(client: TestClient) -> None:
    # u_1's two payment failures fall on one day: the second email is suppressed.
    batch = [
        payment_failed("u_1", event_id="s1"),
        payment_failed("u_1", event_id="s2", event_timestamp="2025-10-31T20:00:00Z"),
        payment_failed("u_2", event_id="s3", properties=ATTEMPT_3),
        signup("u_3", event_id="s4"),
    ]
    client.post("/events/batch", json={"events": batch})
    client.post("/events/batch", json={"events": batch[:1]})  # a duplicate

    metrics = client.get("/metrics").text

    for line in (
        'herald_events_total{event_type="payment_failed",status="accepted"} 3.0',
        'herald_events_total{event_type="payment_failed",status="duplicate"} 1.0',
        'herald_events_total{event_type="signup_completed",status="accepted"} 1.0',
        'herald_decisions_total{outcome="triggered",rule="INSUFFICIENT_FUNDS_EMAIL"} 2.0',
        'herald_decisions_total{outcome="suppressed",rule="INSUFFICIENT_FUNDS_EMAIL"} 1.0',
        'herald_decisions_total{outcome="triggered",rule="HIGH_RISK_ALERT"} 1.0',
        'herald_decisions_total{outcome="skipped",rule="HIGH_RISK_ALERT"} 2.0',
        'herald_decisions_total{outcome="triggered",rule="WELCOME_EMAIL"} 1.0',
    ):
        assert line in metrics


def test_unknown_event_types_share_one_metrics_series(client: TestClient) -> None:
    for name in ("made_up_1", "made_up_2"):
        assert client.post("/events", json=payment_failed(event_type=name)).status_code == 422
    metrics = client.get("/metrics").text
    assert 'herald_events_total{event_type="unknown",status="rejected"} 2.0' in metrics
    assert "made_up" not in metrics


def test_every_refused_event_is_counted_alone_or_in_a_batch(client: TestClient) -> None:
    client.post("/events", json={"user_id": "u_1"})
    client.post("/events", json=payment_failed(properties={"amount": "x"}))
    batch = [payment_failed(event_id="ok"), {"user_id": "u_1"}, payment_failed(event_type="nope")]
    client.post("/events/batch", json={"events": batch})

    metrics = client.get("/metrics").text

    assert 'herald_events_total{event_type="unknown",status="rejected"} 3.0' in metrics
    assert 'herald_events_total{event_type="payment_failed",status="rejected"} 1.0' in metrics
    assert 'herald_events_total{event_type="payment_failed",status="accepted"} 1.0' in metrics


def test_a_batch_refused_whole_counts_one_rejected_as_a_malformed_event_does(
    client: TestClient,
) -> None:
    # The README counts a 422 as rejected: a malformed body to /events was, but a batch
    # refused whole counted nothing, so a client sending broken batches showed no errors.
    refused = [
        client.post("/events/batch", content=b"{", headers={"Content-Type": "application/json"}),
        client.post("/events/batch", json={"events": []}),
        client.post("/events/batch", json=payment_failed()),
    ]

    metrics = client.get("/metrics").text

    assert [answer.status_code for answer in refused] == [422, 422, 422]
    assert 'herald_events_total{event_type="unknown",status="rejected"} 3.0' in metrics
    assert 'status="accepted"' not in metrics


def test_health_and_readiness_answer_the_bodies_the_readme_s_api_table_gives(
    client: TestClient,
) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    [row] = [line for line in readme.splitlines() if line.startswith("| `GET /healthz`")]
    ready = client.get("/readyz").json()

    assert '`{"status": "ok"}`' in row and client.get("/healthz").json() == {"status": "ok"}
    assert f'`{{"status": "{ready["status"]}", "schema", "rules"}}`' in row
    assert sorted(ready) == ["rules", "schema", "status"]
    assert '`{"status": "unavailable"}` with what is wrong in `database` or `schema`' in row


def _chunked(body: bytes) -> Iterator[bytes]:
    """``body`` sent with no declared length (Transfer-Encoding: chunked)."""
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def test_a_body_refused_as_too_large_or_not_json_counts_one_rejected_as_a_422_does(
    client: TestClient,
) -> None:
    # Answered at the edge, before the routes: counted nowhere, an operator watching
    # rejections missed a client whose every event was too large or sent as text/plain.
    json_type = {"Content-Type": "application/json"}
    too_large = b'{"padding": "' + b"x" * 9_000_000 + b'"}'
    refused = [
        client.post("/events", content=too_large, headers=json_type),
        client.post("/events/batch", content=too_large, headers=json_type),
        client.post("/events", content=_chunked(too_large), headers=json_type),
        client.post("/events", content=b"{}", headers={"Content-Type": "text/plain"}),
        client.post("/events/batch", content=b"{}", headers={"Content-Type": "text/plain"}),
        client.post("/events", content=b"{}", headers={**json_type, "Content-Encoding": "gzip"}),
        client.post(
            "/events", content=b"{}", headers={"Content-Type": "application/json; charset=latin-1"}
        ),
    ]

    metrics = client.get("/metrics").text

    assert [answer.status_code for answer in refused] == [413, 413, 413, 415, 415, 415, 415]
    assert 'herald_events_total{event_type="unknown",status="rejected"} 7.0' in metrics


def test_a_body_refused_on_another_route_is_no_event(client: TestClient) -> None:
    answer = client.post(
        "/users/u_1/preferences", content=b"{}", headers={"Content-Type": "text/plain"}
    )

    assert answer.status_code == 415
    assert "herald_events_total{" not in client.get("/metrics").text
