"""A template that the data of one event breaks (traits are the client's, untyped) skips
that rule for that event, with the reason; the event, its other rules and the rest of
the batch are stored as usual."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from herald.domain.model import Event, Outcome
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestStatus, ingest
from herald.store.database import Database
from herald.store.tables import messages
from herald.store.unit_of_work import UnitOfWork

RULES = """
events:
  signup_completed: {}
traits:
  email: string
  balance: number
rules:
  - id: BALANCE_EMAIL
    trigger: signup_completed
    when: has(user.balance)
    channel: email
    category: transactional
    template: balance
  - {id: SIGNUP_ALERT, trigger: signup_completed, channel: internal}
"""


def signup(user: str, balance: object) -> Event:
    return Event(
        event_id=f"evt_{user}",
        user_id=user,
        event_type="signup_completed",
        timestamp=datetime(2025, 11, 2, 10, tzinfo=UTC),
        user_traits={"email": f"{user}@example.com", "balance": balance},
    )


def test_an_event_whose_data_breaks_a_template_skips_that_rule_only(
    database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "templates" / "balance"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text('Balance {{ "%.2f" | format(user.balance) }}')
    (folder / "body.txt").write_text("Hello")
    (tmp_path / "rules.yaml").write_text(RULES)
    ruleset = load_ruleset(tmp_path / "rules.yaml")

    with UnitOfWork(database) as uow:
        broken, fine = ingest(
            uow, [signup("u_text", "lots"), signup("u_num", 12.5)], ruleset, now=datetime.now(UTC)
        )
        uow.commit()

    assert broken.status is fine.status is IngestStatus.ACCEPTED
    email, alert = broken.decisions
    assert email.outcome is Outcome.SKIPPED and email.message_id is None
    assert email.reason == (
        '`has(user.balance)` is true (user.balance is "lots"); '
        "the message could not be rendered: template balance: "
        "user.balance is a string, not the number the rule file declares"
    )
    assert alert.outcome is Outcome.TRIGGERED
    assert [d.outcome for d in fine.decisions] == [Outcome.TRIGGERED, Outcome.TRIGGERED]
    with database.reader.connect() as connection:
        stored = connection.execute(select(messages.c.user_id, messages.c.rule, messages.c.subject))
        assert sorted(stored) == [
            ("u_num", "BALANCE_EMAIL", "Balance 12.50"),
            ("u_num", "SIGNUP_ALERT", "SIGNUP_ALERT"),
            ("u_text", "SIGNUP_ALERT", "SIGNUP_ALERT"),
        ]


FEE_RULES = """
events:
  payment_failed:
    properties:
      fee: {type: number}
traits:
  email: string
rules:
  - id: FEE_EMAIL
    trigger: payment_failed
    when: '!has(event.properties.fee) || event.properties.fee > 0'
    channel: email
    category: transactional
    template: fee
  - {id: FAILED_ALERT, trigger: payment_failed, channel: internal}
"""


@pytest.mark.parametrize(
    ("properties", "read", "used"),
    [({}, "missing", "absent"), ({"fee": None}, "null", "null")],
    ids=["absent", "sent_as_null"],
)
def test_arithmetic_on_an_absent_optional_property_names_it_and_what_was_tried(
    properties: dict[str, Any], read: str, used: str, database: Database, tmp_path: Path
) -> None:
    # The condition reads the fee, so the check leaves it to the condition to keep events
    # without one away from the template; this one lets them through.
    folder = tmp_path / "templates" / "fee"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Your payment failed")
    (folder / "body.txt").write_text("We will charge {{ event.properties.fee * 2 }}.")
    (tmp_path / "rules.yaml").write_text(FEE_RULES)
    ruleset = load_ruleset(tmp_path / "rules.yaml")
    without_fee = Event(
        event_id="evt_no_fee",
        user_id="u_1",
        event_type="payment_failed",
        timestamp=datetime(2025, 11, 2, 10, tzinfo=UTC),
        properties=properties,
        user_traits={"email": "u_1@example.com"},
    )

    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [without_fee], ruleset, now=datetime.now(UTC))
        uow.commit()

    email, alert = result.decisions
    assert email.outcome is Outcome.SKIPPED and email.message_id is None
    assert email.reason == (
        "`!has(event.properties.fee) || event.properties.fee > 0` is true "
        f"(event.properties.fee is {read}); "
        f"the message could not be rendered: template fee: event.properties.fee is {used}, "
        "and the template uses it in a multiplication (*): test it first with "
        "`{% if event.properties.fee is defined %}`, or give it a default with `| default(...)`"
    )
    assert alert.outcome is Outcome.TRIGGERED


LINK_RULES = """
events:
  signup_completed: {}
  link_bank_success: {}
traits:
  phone: string
  balance: number
rules:
  - id: LINK_SMS
    trigger: link_bank_success
    after: {event: signup_completed, within: 24h}
    when: has(user.balance)
    channel: sms
    category: transactional
    template: link
"""


def test_a_render_failure_decided_on_a_later_anchor_names_the_trigger_it_is_about(
    database: Database, tmp_path: Path
) -> None:
    # Decided on the signup, the reason said only "the message could not be rendered":
    # not which of the user's bank links it was about.
    folder = tmp_path / "templates" / "link"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Linked")
    (folder / "body.txt").write_text('Balance {{ "%.2f" | format(user.balance) }}')
    (tmp_path / "rules.yaml").write_text(LINK_RULES)
    ruleset = load_ruleset(tmp_path / "rules.yaml")
    link = Event(
        event_id="evt_link",
        user_id="u_1",
        event_type="link_bank_success",
        timestamp=datetime(2025, 11, 2, 11, tzinfo=UTC),
        user_traits={"phone": "+351912345678", "balance": "lots"},
    )
    signup = Event(
        event_id="evt_signup",
        user_id="u_1",
        event_type="signup_completed",
        timestamp=datetime(2025, 11, 2, 10, tzinfo=UTC),
    )

    with UnitOfWork(database) as uow:
        ingest(uow, [link], ruleset, now=datetime.now(UTC))
        [result] = ingest(uow, [signup], ruleset, now=datetime.now(UTC))
        uow.commit()

    [decision] = result.decisions
    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        "link_bank_success evt_link at 2025-11-02T11:00:00Z came within 24h after this "
        'signup_completed; `has(user.balance)` is true (user.balance is "lots"); '
        "the message could not be rendered: template link: "
        "user.balance is a string, not the number the rule file declares"
    )
