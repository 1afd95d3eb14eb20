"""A rule with `max_age` on a server: a payment that failed days before it reaches Herald
gets no email, and its audit says why; one of an hour ago gets it. GET /rules shows it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from herald.domain.timeutil import iso
from herald.rules.loader import default_rules_path
from tests.support.api_requests import payment_failed


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    default = default_rules_path()
    text = default.read_text(encoding="utf-8").replace(
        "    template: insufficient_funds\n", "    template: insufficient_funds\n    max_age: 72h\n"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"templates_dir: {default.parent / 'templates'}\n{text}", encoding="utf-8")
    settings = Settings(
        database_url=database_url, rules=str(rules), outbox_file=str(tmp_path / "o.jsonl")
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _ago(**delta: float) -> str:
    return iso(datetime.now(UTC) - timedelta(**delta))


def test_a_payment_that_failed_days_ago_gets_no_email_and_the_audit_says_why(
    client: TestClient,
) -> None:
    old = client.post("/events", json=payment_failed("u_old", event_timestamp=_ago(days=4)))
    recent = client.post("/events", json=payment_failed("u_new", event_timestamp=_ago(hours=1)))

    [old_decision] = [d for d in old.json()["decisions"] if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL"]
    assert old_decision["outcome"] == "skipped"
    assert "is 4 days old, past the rule's max_age of 72h" in old_decision["reason"]
    assert client.get("/audit/u_old").json()["messages"] == []
    outcomes = {d["rule"]: d["outcome"] for d in recent.json()["decisions"]}
    assert outcomes["INSUFFICIENT_FUNDS_EMAIL"] == "triggered"


def test_the_rules_endpoint_shows_the_max_age(client: TestClient) -> None:
    rules = {rule["id"]: rule for rule in client.get("/rules").json()["rules"]}

    assert rules["INSUFFICIENT_FUNDS_EMAIL"]["max_age"] == {"age": "72h", "age_seconds": 259200.0}
    assert rules["WELCOME_EMAIL"]["max_age"] is None
