"""The pages of unsubscribe links: opening one changes nothing, posting to it (a mail
client's one-click unsubscribe, or the page's button) unsubscribes the user it names
from marketing on its channel, and a link this Herald did not make is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings
from herald.domain.unsubscribe_tokens import unsubscribe_token
from tests.support.api_requests import payment_failed, signup
from tests.support.processes import wait_for

KEY = "an-unsubscribe-key-of-32-characters-or-more"
ADMIN = {"Authorization": "Bearer an-admin-token-of-some-length"}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _settings(database_url: str, tmp_path: Path, **more: Any) -> Settings:
    # No dispatcher unless asked: the messages stay waiting, for an unsubscribe to cancel.
    return Settings(
        database_url=database_url,
        outbox_file=str(tmp_path / "outbox.jsonl"),
        admin_token=ADMIN["Authorization"].removeprefix("Bearer "),
        public_url="https://herald.example.com",
        unsubscribe_key=KEY,
        **{"dispatcher": False, **more},
    )


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(database_url, tmp_path))) as test_client:
        yield test_client


def _audit(client: TestClient, user: str) -> dict[str, Any]:
    answer = client.get(f"/audit/{user}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _link(user: str, channel: str = "email") -> str:
    return f"/unsubscribe/{unsubscribe_token(KEY, user, channel)}"


def test_opening_a_link_shows_a_button_and_changes_nothing(client: TestClient) -> None:
    client.post("/events", json=signup(user="u_open"))

    page = client.get(_link("u_open"))

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "marketing messages by email" in page.text
    assert '<form method="post">' in page.text
    assert "<script" not in page.text and "http" not in page.text  # nothing loaded
    audit = _audit(client, "u_open")
    assert audit["user"]["preferences"]["unsubscribed"] == []
    assert [m["status"] for m in audit["messages"]] == ["pending"]


def test_a_one_click_post_unsubscribes_and_cancels_the_marketing_waiting(
    client: TestClient,
) -> None:
    welcome = client.post("/events", json=signup(user="u_click")).json()["decisions"][0]
    funds = client.post("/events", json=payment_failed(user="u_click")).json()["decisions"]
    transactional = next(d for d in funds if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL")
    before = datetime.now(UTC)

    answer = client.post(_link("u_click"), data=ONE_CLICK)

    assert answer.status_code == 200, answer.text
    assert "no more marketing messages by email" in answer.text
    audit = _audit(client, "u_click")
    preferences = audit["user"]["preferences"]
    assert preferences["unsubscribed"] == ["email"]
    assert datetime.fromisoformat(preferences["unsubscribed_at"]["email"]) >= before
    messages = {m["message_id"]: m for m in audit["messages"]}
    cancelled = messages[welcome["message_id"]]
    assert cancelled["status"] == "cancelled"
    assert "through an unsubscribe link" in cancelled["last_error"]
    assert messages[transactional["message_id"]]["status"] == "pending"


def test_a_click_keeps_the_unsubscribes_the_user_had_and_their_times(client: TestClient) -> None:
    earlier = client.post(
        "/users/u_keep/preferences", json={"unsubscribed": ["sms"]}, headers=ADMIN
    )
    sms_at = earlier.json()["preferences"]["unsubscribed_at"]["sms"]

    assert client.post(_link("u_keep"), data=ONE_CLICK).status_code == 200
    assert client.post(_link("u_keep"), data=ONE_CLICK).status_code == 200  # twice: the same

    preferences = _audit(client, "u_keep")["user"]["preferences"]
    assert preferences["unsubscribed"] == ["email", "sms"]
    assert preferences["unsubscribed_at"]["sms"] == sms_at


def test_the_page_s_button_may_post_no_body_at_all(client: TestClient) -> None:
    answer = client.post(_link("u_button"))

    assert answer.status_code == 200, answer.text
    assert _audit(client, "u_button")["user"]["preferences"]["unsubscribed"] == ["email"]


def test_a_multipart_one_click_post_is_taken_too(client: TestClient) -> None:
    # RFC 8058 lets a mail client send its one-click body as multipart/form-data.
    answer = client.post(_link("u_multi"), files={"List-Unsubscribe": (None, "One-Click")})

    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "token",
    [
        unsubscribe_token("another-key-of-32-characters-or-more", "u_forged", "email"),
        unsubscribe_token(KEY, "u_forged", "email")[:-2],
        "not-a-token",
    ],
    ids=["another key", "cut short", "no token"],
)
def test_a_link_herald_did_not_make_is_not_found_and_says_no_more(
    client: TestClient, token: str
) -> None:
    page = client.get(f"/unsubscribe/{token}")
    posted = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)

    assert (page.status_code, posted.status_code) == (404, 404)
    assert page.text == posted.text
    assert "u_forged" not in page.text
    assert client.get("/audit/u_forged", headers=ADMIN).status_code == 404


def test_a_body_neither_form_nor_json_is_refused(client: TestClient) -> None:
    answer = client.post(
        _link("u_text"),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "text/plain"},
    )

    assert answer.status_code == 415
    assert answer.json()["detail"] == (
        "send a form, application/x-www-form-urlencoded or multipart/form-data "
        "(got Content-Type 'text/plain')"
    )


def test_the_links_routes_are_documented_and_ask_for_no_token(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    operations = paths["/unsubscribe/{token}"]
    assert set(operations) == {"get", "post"}
    assert all("security" not in operation for operation in operations.values())


def test_without_the_settings_there_are_no_such_routes(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"))
    with TestClient(create_app(settings)) as client:
        token = unsubscribe_token(KEY, "u_1", "email")
        assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 404
        assert "/unsubscribe/{token}" not in client.get("/openapi.json").json()["paths"]


def test_a_server_answering_loopback_names_alone_takes_a_link_by_its_public_name(
    database_url: str, tmp_path: Path
) -> None:
    # Reached through a proxy, the request carries the public name the links hold.
    settings = _settings(database_url, tmp_path, loopback_requests_only=True)
    with TestClient(create_app(settings), base_url="https://herald.example.com") as client:
        assert client.get("/healthz").status_code == 421
        assert client.get(_link("u_proxy")).status_code == 200
        assert client.post(_link("u_proxy"), data=ONE_CLICK).status_code == 200
        paths = client.get("/openapi.json", headers={"Host": "127.0.0.1"}).json()["paths"]
        assert "421" in paths["/healthz"]["get"]["responses"]
        assert "421" not in paths["/unsubscribe/{token}"]["post"]["responses"]


def test_the_link_a_sent_welcome_carries_unsubscribes_its_user(
    database_url: str, tmp_path: Path
) -> None:
    """From the settings to the click: the dispatcher writes the link into the stub's
    line, and posting to it unsubscribes the user it was sent to."""
    settings = _settings(database_url, tmp_path, dispatcher=True)
    outbox = Path(settings.outbox_file or "")
    with TestClient(create_app(settings)) as client:
        client.post("/events", json=signup(user="u_sent"))
        client.post("/events", json=payment_failed(user="u_sent"))
        wait_for(lambda: outbox.exists() and len(outbox.read_text().splitlines()) == 2, "sent")
        lines = {line["rule"]: line for line in map(json.loads, outbox.read_text().splitlines())}
        link = lines["WELCOME_EMAIL"]["unsubscribe_url"]
        assert "unsubscribe_url" not in lines["INSUFFICIENT_FUNDS_EMAIL"]
        assert link.startswith("https://herald.example.com/unsubscribe/")

        answer = client.post(link.removeprefix("https://herald.example.com"), data=ONE_CLICK)

        assert answer.status_code == 200
        assert _audit(client, "u_sent")["user"]["preferences"]["unsubscribed"] == ["email"]
