"""Unsubscribes, set through the admin route or sent by the app as a trait, and what they
stop, cancel or leave alone."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import text, update

from herald.store.tables import users
from tests.support.api_requests import payment_failed, signup
from tests.support.processes import wait_for


def test_an_unsubscribe_skips_marketing_but_not_transactional_messages(client: TestClient) -> None:
    response = client.post("/users/u_3/preferences", json={"unsubscribed": ["email"]})
    assert response.status_code == 200
    welcome = client.post("/events", json=signup(user="u_3", event_id="s3")).json()["decisions"][0]
    assert welcome["outcome"] == "skipped" and "unsubscribed from email" in welcome["reason"]
    funds = client.post("/events", json=payment_failed(user="u_3", event_id="p3")).json()[
        "decisions"
    ]
    assert (
        next(d for d in funds if d["rule"] == "INSUFFICIENT_FUNDS_EMAIL")["outcome"] == "triggered"
    )


def test_an_unsubscribe_takes_the_names_the_unsubscribed_trait_takes(client: TestClient) -> None:
    """The trait reads names in any case and `all` for all marketing; the same list sent
    here was refused with a 422."""
    answer = client.post("/users/u_all/preferences", json={"unsubscribed": ["ALL", "Email"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["preferences"]["unsubscribed"] == ["email", "marketing"]
    traits = {"email": "u_all@example.com", "phone": "+351912345678", "marketing_opt_in": True}
    signup_decisions = client.post("/events", json=signup(user="u_all", user_traits=traits))
    welcome = signup_decisions.json()["decisions"][0]
    assert welcome["outcome"] == "skipped"
    assert "unsubscribed from all marketing" in welcome["reason"]
    refused = client.post("/users/u_all/preferences", json={"unsubscribed": ["fax"]})
    assert refused.status_code == 422


def test_an_unsubscribe_cancels_a_marketing_dead_letter_as_its_answer_documents(
    client: TestClient,
) -> None:
    welcome = client.post("/events", json=signup(user="u_dead")).json()["decisions"][0]
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    wait_for(lambda: client.get("/audit/u_dead").json()["messages"][0]["status"] == "sent", "sent")
    with database.writer.begin() as connection:  # as if every attempt had failed
        connection.execute(
            text("UPDATE messages SET status = 'failed' WHERE message_id = :id"),
            {"id": welcome["message_id"]},
        )

    answer = client.post("/users/u_dead/preferences", json={"unsubscribed": ["email"]}).json()

    assert answer["cancelled_messages"] == [welcome["message_id"]]
    documented = client.get("/openapi.json").json()["components"]["schemas"]["PreferencesOut"]
    assert "dead letter" in documented["properties"]["cancelled_messages"]["description"]


def test_a_message_an_unsubscribe_cancels_says_when_each_channel_was_unsubscribed_from(
    client: TestClient,
) -> None:
    """Unsubscribed from sms first, then from email too: the welcome email it cancels
    said both were made at the second request."""
    sms = client.post("/users/u_apart/preferences", json={"unsubscribed": ["sms"]}).json()
    welcome = client.post("/events", json=signup(user="u_apart")).json()["decisions"][0]
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    wait_for(lambda: client.get("/audit/u_apart").json()["messages"][0]["status"] == "sent", "sent")
    with database.writer.begin() as connection:  # as if every attempt had failed
        connection.execute(
            text("UPDATE messages SET status = 'failed' WHERE message_id = :id"),
            {"id": welcome["message_id"]},
        )

    both = client.post("/users/u_apart/preferences", json={"unsubscribed": ["email", "sms"]})

    assert both.json()["cancelled_messages"] == [welcome["message_id"]]
    sms_at, email_at = sms["preferences"]["updated_at"], both.json()["preferences"]["updated_at"]
    [message] = client.get("/audit/u_apart").json()["messages"]
    assert message["status"] == "cancelled"
    assert (
        f"the user unsubscribed from sms at {sms_at}, email at {email_at}"
        in (message["last_error"])
    )


def test_the_preferences_have_one_shape_whether_set_here_or_never(client: TestClient) -> None:
    """A user an event created has no preferences stored: the audit showed ``{}`` there,
    and ``{"unsubscribed": []}`` once an empty list was set, two shapes of one meaning."""
    client.post("/events", json=signup(user="u_never"))
    never_set = client.get("/audit/u_never").json()["user"]["preferences"]
    emptied = client.post("/users/u_empty/preferences", json={"unsubscribed": []}).json()
    client.post("/users/u_sms/preferences", json={"unsubscribed": ["SMS"]})

    def unsubscribed(user: str) -> object:
        return client.get(f"/audit/{user}").json()["user"]["preferences"]["unsubscribed"]

    assert never_set == {"unsubscribed": [], "updated_at": None, "unsubscribed_at": {}}
    assert emptied["preferences"]["unsubscribed"] == []
    assert (unsubscribed("u_empty"), unsubscribed("u_sms")) == ([], ["sms"])
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Preferences"]["required"] == ["unsubscribed", "updated_at", "unsubscribed_at"]
    for answer in ("UserOut", "PreferencesOut"):
        documented = schemas[answer]["properties"]["preferences"]
        assert "#/components/schemas/Preferences" in str(documented), answer


def test_the_audit_says_since_when_the_preferences_were_set(client: TestClient) -> None:
    """Asked why a user got no welcome and since when they opted out, support could read
    the time only from a message the unsubscribe happened to cancel."""
    client.post("/events", json=signup(user="u_events_only"))
    before = datetime.now(UTC)
    answer = client.post("/users/u_since/preferences", json={"unsubscribed": ["email"]}).json()
    after = datetime.now(UTC)

    set_at = answer["preferences"]["updated_at"]
    assert set_at.endswith("Z") and before <= datetime.fromisoformat(set_at) <= after
    audited = client.get("/audit/u_since").json()["user"]["preferences"]
    assert audited == {
        "unsubscribed": ["email"],
        "updated_at": set_at,
        "unsubscribed_at": {"email": set_at},
    }
    never_set = client.get("/audit/u_events_only").json()["user"]["preferences"]
    assert never_set == {"unsubscribed": [], "updated_at": None, "unsubscribed_at": {}}
    welcome = client.post("/events", json=signup(user="u_since")).json()["decisions"][0]
    assert welcome["reason"].endswith(f"the user unsubscribed from email at {set_at}")
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "updated_at" in schemas["Preferences"]["required"]


def test_each_channel_s_unsubscribe_is_said_at_its_own_time(client: TestClient) -> None:
    """An unsubscribe from email, then one from sms as well: the skipped welcome email
    said the user unsubscribed from email when they added sms, as the preferences kept
    one time, that of the last change, for every channel."""
    email = client.post("/users/u_two/preferences", json={"unsubscribed": ["email"]}).json()
    email_at = email["preferences"]["updated_at"]
    both = client.post("/users/u_two/preferences", json={"unsubscribed": ["sms", "email"]}).json()
    sms_at = both["preferences"]["updated_at"]
    assert datetime.fromisoformat(email_at) < datetime.fromisoformat(sms_at)

    welcome = client.post("/events", json=signup(user="u_two")).json()["decisions"][0]

    assert welcome["rule"] == "WELCOME_EMAIL" and welcome["outcome"] == "skipped"
    assert welcome["reason"].endswith(f"the user unsubscribed from email at {email_at}")
    shown = {
        "unsubscribed": ["email", "sms"],
        "updated_at": sms_at,  # still when they were last set
        "unsubscribed_at": {"email": email_at, "sms": sms_at},
    }
    assert both["preferences"] == shown
    assert client.get("/audit/u_two").json()["user"]["preferences"] == shown
    # Dropped and made again, an unsubscribe is as new as its second making.
    client.post("/users/u_two/preferences", json={"unsubscribed": ["sms"]})
    again = client.post("/users/u_two/preferences", json={"unsubscribed": ["email", "sms"]}).json()
    made_again = again["preferences"]["updated_at"]
    assert again["preferences"]["unsubscribed_at"] == {"email": made_again, "sms": sms_at}


def test_preferences_stored_with_one_time_give_it_to_each_of_their_channels(
    client: TestClient,
) -> None:
    """Stored before each channel kept its own time, preferences hold only when they were
    last set: that time stays each of their channels' own once another channel is added,
    rather than becoming the new one's."""
    client.post("/users/u_old/preferences", json={"unsubscribed": ["email"]})
    database = client.app.state.runtime.database  # type: ignore[attr-defined]
    with database.writer.begin() as connection:  # as an earlier Herald stored them
        connection.execute(
            update(users)
            .where(users.c.user_id == "u_old")
            .values(preferences={"unsubscribed": ["email"], "set_us": OLD_SET_US})
        )
    old_at = "2026-01-02T03:04:05Z"
    before = client.get("/audit/u_old").json()["user"]["preferences"]
    assert before == {
        "unsubscribed": ["email"],
        "updated_at": old_at,
        "unsubscribed_at": {"email": old_at},
    }

    both = client.post("/users/u_old/preferences", json={"unsubscribed": ["email", "sms"]}).json()

    sms_at = both["preferences"]["updated_at"]
    assert both["preferences"]["unsubscribed_at"] == {"email": old_at, "sms": sms_at}
    welcome = client.post("/events", json=signup(user="u_old")).json()["decisions"][0]
    assert welcome["reason"].endswith(f"the user unsubscribed from email at {old_at}")


OLD_SET_US = 1_767_323_045_000_000  # 2026-01-02T03:04:05Z


def test_an_event_saying_unsubscribed_is_empty_does_not_undo_an_unsubscribe_made_here(
    client: TestClient,
) -> None:
    client.post("/users/u_4/preferences", json={"unsubscribed": ["email"]})
    traits = {"email": "u_4@example.com", "marketing_opt_in": True, "unsubscribed": []}
    answer = client.post("/events", json=signup(user="u_4", user_traits=traits)).json()

    welcome = answer["decisions"][0]
    assert welcome["outcome"] == "skipped" and "unsubscribed from email" in welcome["reason"]


def test_an_unsubscribe_the_app_sends_as_a_trait_holds_for_the_user_s_later_events(
    client: TestClient,
) -> None:
    unsubscribing = payment_failed(user="u_5", event_id="p5")
    unsubscribing["user_traits"] = {**unsubscribing["user_traits"], "unsubscribed": ["email"]}
    assert client.post("/events", json=unsubscribing).status_code == 202

    welcome = client.post("/events", json=signup(user="u_5")).json()["decisions"][0]

    assert welcome["outcome"] == "skipped" and "unsubscribed from email" in welcome["reason"]


def test_an_opt_out_dated_after_a_late_signup_skips_its_welcome_though_the_signup_opted_in(
    client: TestClient,
) -> None:
    opting_out = payment_failed(user="u_9", event_timestamp="2025-11-01T11:00:00Z")
    opting_out["user_traits"] = {"marketing_opt_in": False}
    assert client.post("/events", json=opting_out).status_code == 202

    answer = client.post("/events", json=signup(user="u_9")).json()  # 10:00, opted in

    welcome = answer["decisions"][0]
    assert welcome["outcome"] == "skipped"
    assert "marketing_opt_in is false" in welcome["reason"]
    assert "later" in welcome["reason"]
    assert client.get("/audit/u_9").json()["messages"] == []


def test_a_preference_for_an_id_no_event_could_carry_is_refused(client: TestClient) -> None:
    response = client.post("/users/%20u_6/preferences", json={"unsubscribed": ["email"]})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "user_id"]
    assert client.get("/audit/%20u_6").status_code == 404


def test_a_preference_body_with_a_key_it_does_not_define_is_refused_not_half_applied(
    client: TestClient,
) -> None:
    body = {"unsubscribed": ["email"], "unsubscribe": ["sms"]}
    response = client.post("/users/u_7/preferences", json=body)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "unsubscribe"]
    assert client.get("/audit/u_7").status_code == 404  # nothing was stored


def test_a_name_refused_is_told_every_name_taken(client: TestClient) -> None:
    """The refusal listed 'email', 'sms' and 'marketing', leaving out `all` and that the
    case does not matter, which the same request takes."""
    refused = client.post("/users/u_1/preferences", json={"unsubscribed": ["fax"]})

    assert refused.status_code == 422
    assert refused.json()["detail"][0]["msg"] == (
        "Input should be 'email', 'sms', 'marketing' or 'all', in any case"
    )
