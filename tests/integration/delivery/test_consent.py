"""Consent withdrawn after a message was queued: an unsubscribe, or traits saying no,
cancel the marketing still waiting, dead letters and retries included."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from herald.api.schemas.responses import AuditOut
from herald.cli.main import app as cli
from herald.delivery.provider import DeliveryResult, SendRequest
from herald.delivery.providers.stub import StubProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.quiet_hours import QuietHours, hold_policy
from herald.domain.model import Event
from herald.domain.timeutil import iso
from herald.service.audit import user_audit
from herald.service.ingest import ingest
from herald.service.preferences import set_unsubscribes
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock
from tests.support.delivery import (
    RULES,
    dispatcher,
    funds_failure,
    link_after_signup,
    message,
    run_rounds,
    store,
)
from tests.support.http_receiver import CannedResponse, HttpReceiver


def test_an_unsubscribe_cancels_the_marketing_still_waiting_and_nothing_else(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    # Held for quiet hours (or a retry, or a backlog), a welcome email used to go out
    # after the user had unsubscribed.
    quiet_all_day = hold_policy({"email": QuietHours(time(0, 0), time(23, 59))})
    with UnitOfWork(database) as uow:
        welcome = Event(
            "signup-q1",
            "q1",
            "signup_completed",
            clock(),
            user_traits={"email": "q1@example.com", "marketing_opt_in": True},
        )
        ingest(uow, [welcome, funds_failure("q1")], RULES, now=clock(), hold=quiet_all_day)
        uow.commit()

    _preferences, cancelled = set_unsubscribes(database, "q1", ["email"], now=clock())
    clock.now += timedelta(days=1)  # past the quiet hours
    report = asyncio.run(
        dispatcher(database, clock, {"email": StubProvider(tmp_path / "o.jsonl")}).run_once()
    )

    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT rule, status, last_error FROM messages ORDER BY rule"
        ).all()
    assert [(rule, status) for rule, status, _ in rows] == [
        ("INSUFFICIENT_FUNDS_EMAIL", "sent"),  # transactional: not an unsubscribe's
        ("WELCOME_EMAIL", "cancelled"),
    ]
    assert rows[1].last_error.startswith("the user unsubscribed from email at ")
    assert len(cancelled) == 1 and report.sent == 1
    audit = AuditOut.model_validate(user_audit(database, "q1", limit=10, cursor=None))
    assert sorted(m.status for m in audit.messages) == ["cancelled", "sent"]


@pytest.mark.parametrize(
    "withdrawn",
    [{"marketing_opt_in": False}, {"unsubscribed": ["email"]}, {"unsubscribed": "marketing"}],
)
def test_traits_that_withdraw_consent_cancel_the_marketing_still_waiting(
    withdrawn: dict[str, Any], database: Database, clock: FixedClock
) -> None:
    # Only an unsubscribe through the API cancelled: the app saying the same in a later
    # event's traits left the held welcome to go out at the end of the quiet hours.
    quiet_all_day = hold_policy({"email": QuietHours(time(0, 0), time(23, 59))})
    traits = {"email": "q3@example.com", "marketing_opt_in": True}
    welcome = Event("signup-q3", "q3", "signup_completed", clock(), user_traits=traits)
    later = Event(
        "link-q3", "q3", "link_bank_success", clock() + timedelta(minutes=5), user_traits=withdrawn
    )
    for events in ([welcome, funds_failure("q3")], [later]):
        with UnitOfWork(database) as uow:
            ingest(uow, events, RULES, now=clock(), hold=quiet_all_day)
            uow.commit()

    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT rule, status, last_error FROM messages ORDER BY rule"
        ).all()
    assert [(rule, status) for rule, status, _ in rows] == [
        ("INSUFFICIENT_FUNDS_EMAIL", "pending"),  # transactional: consent is not asked
        ("WELCOME_EMAIL", "cancelled"),
    ]
    # Which event withdrew it, and what it said: the reason a support agent reads.
    said = json.dumps(next(iter(withdrawn.values())))
    assert rows[1].last_error.startswith(
        f"event link-q3 (link_bank_success at {iso(later.timestamp)}) set "
        f"{next(iter(withdrawn))} to {said}, which closed email"
    ), rows[1].last_error


def test_an_older_event_saying_no_consent_cancels_nothing(
    database: Database, clock: FixedClock
) -> None:
    # Event time decides a trait: a late-arriving older "no" is not the user's last word.
    quiet_all_day = hold_policy({"email": QuietHours(time(0, 0), time(23, 59))})
    traits = {"email": "q4@example.com", "marketing_opt_in": True}
    welcome = Event("signup-q4", "q4", "signup_completed", clock(), user_traits=traits)
    older = Event(
        "link-q4",
        "q4",
        "link_bank_success",
        clock() - timedelta(days=1),
        user_traits={"marketing_opt_in": False},
    )
    for events in ([welcome], [older]):
        with UnitOfWork(database) as uow:
            ingest(uow, events, RULES, now=clock(), hold=quiet_all_day)
            uow.commit()

    assert message(database).status == "pending"


def test_an_unsubscribe_cancels_a_marketing_dead_letter_so_no_retry_sends_it(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    # The dead letter stayed failed through the unsubscribe, and the operator's retry of
    # every dead letter, once the relay was fixed, sent the welcome to the user who left.
    welcome = Event(
        "signup-q2",
        "q2",
        "signup_completed",
        clock(),
        user_traits={"email": "q2@example.com", "marketing_opt_in": True},
    )
    store(database, clock, [welcome])
    with HttpReceiver() as receiver:
        receiver.respond_with(CannedResponse(400))
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        assert asyncio.run(worker.run_once()).failed == 1

        _preferences, cancelled = set_unsubscribes(database, "q2", ["email"], now=clock())
        result = CliRunner().invoke(
            cli, ["messages", "retry", "--failed", "--database", database_url]
        )
        clock.now += timedelta(days=3650)  # the command re-queues on the wall clock
        report = asyncio.run(worker.run_once())
        sent = len(receiver.requests)

    assert result.exit_code == 0 and "re-queued 0 message(s)" in result.output
    assert report.claimed == 0 and sent == 1
    row = message(database)
    assert cancelled == [row.message_id] and row.status == "cancelled"


class UnsubscribedMidSend:
    """A provider whose first send is answered 'try again' after the user unsubscribed
    from its channel through the API, while that send was under way."""

    name = "sms-gateway"
    local = False

    def __init__(self, database: Database, clock: FixedClock) -> None:
        self.database, self.clock = database, clock
        self.sends: list[str] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sends.append(request.message_id)
        if len(self.sends) == 1:
            await asyncio.to_thread(
                set_unsubscribes, self.database, request.user_id, ["sms"], now=self.clock()
            )
            return DeliveryResult.retry("503 from the gateway")
        return DeliveryResult.sent("202")

    async def aclose(self) -> None:
        pass


def test_a_marketing_retry_is_not_sent_once_the_user_has_unsubscribed(
    database: Database, clock: FixedClock
) -> None:
    # The unsubscribe could not cancel a message being sent; its retry then went out to
    # the user who had just unsubscribed.
    store(database, clock, link_after_signup("q5"))
    provider = UnsubscribedMidSend(database, clock)

    run_rounds(dispatcher(database, clock, {"sms": provider}), clock, rounds=2)

    row = message(database)
    assert provider.sends == [row.message_id]
    assert row.status == "cancelled"
    # How and when it was closed, and when the message was stopped: the audit's reason.
    assert re.fullmatch(
        re.escape(
            "not sent: the user closed sms to marketing after it was decided (they "
            "unsubscribed through POST /users/{id}/preferences at 2025-11-03T12:00:00Z); "
            "cancelled at "
        )
        + r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
        row.last_error,
    ), row.last_error
