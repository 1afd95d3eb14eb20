"""A rule's cancel reaches the messages a dispatcher claimed but has not begun to send:
a round of slow sends keeps its last messages waiting for their turn for tens of
seconds, and each of them went out after `herald messages cancel` had said that it would
not be sent again."""

from __future__ import annotations

import asyncio
import logging

import pytest
from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.delivery.provider import DeliveryResult, SendRequest
from herald.delivery.ratelimit import ChannelRateLimits
from herald.store.database import Database
from herald.store.outbox import CANCELLED, SENT
from herald.store.unit_of_work import ReadOnly
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, store

CANCEL = ["messages", "cancel", "--rule", "INSUFFICIENT_FUNDS_EMAIL"]


class SlowReceiverCancelledOnFirstSend:
    """A receiver that takes ``takes_s`` to accept each message; during the first, the
    operator cancels the rule of the messages."""

    name = "slow"
    local = False

    def __init__(self, database_url: str, takes_s: float) -> None:
        self._database_url = database_url
        self._takes_s = takes_s
        self.sends: list[str] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sends.append(request.message_id)
        if len(self.sends) == 1:
            result = CliRunner().invoke(cli, [*CANCEL, "--database", self._database_url])
            assert result.exit_code == 0, result.output
        await asyncio.sleep(self._takes_s)
        return DeliveryResult.sent("accepted")

    async def aclose(self) -> None:
        pass


def statuses(database: Database) -> list[str]:
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql("SELECT status FROM messages").all()
    return sorted(status for (status,) in rows)


def test_a_claimed_message_whose_rule_is_cancelled_before_its_turn_is_not_sent(
    database: Database,
    database_url: str,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store(database, clock, [funds_failure(f"u{n}") for n in range(3)])
    # One send at a time, each longer than the dispatcher waits between two readings of
    # the cancels: the second message's turn comes after the cancel has been read.
    receiver = SlowReceiverCancelledOnFirstSend(database_url, takes_s=1.3)
    worker = dispatcher(database, clock, {"email": receiver}, concurrency=1)

    with caplog.at_level(logging.INFO, logger="herald.delivery.dispatcher"):
        asyncio.run(worker.run_once())

    assert len(receiver.sends) == 1  # under way at the cancel: beyond recall
    assert statuses(database) == [CANCELLED, CANCELLED, SENT]
    with ReadOnly(database) as read:
        reasons = read.connection.exec_driver_sql(
            f"SELECT last_error FROM messages WHERE status = '{CANCELLED}'"
        ).all()
    said = "cancelled by `herald messages cancel --rule INSUFFICIENT_FUNDS_EMAIL` at "
    assert len({reason for (reason,) in reasons}) == 1  # one cancel, one reason
    assert all(reason.startswith(said) for (reason,) in reasons), reasons
    assert "round of 3 message(s): 1 sent, 0 to retry, 0 failed, 0 deferred, 2 cancelled" in [
        record.getMessage() for record in caplog.records
    ]


def test_a_round_counts_as_cancelled_the_messages_it_gave_back_that_a_cancel_ended(
    database: Database,
    database_url: str,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At one a second, the round sends one message and gives two back for their turns;
    the rule is cancelled meanwhile, and the two end cancelled as they are given back. The
    round's line said `2 deferred, 0 cancelled`, as if they were still to be sent."""
    store(database, clock, [funds_failure(f"r{n}") for n in range(3)])
    receiver = SlowReceiverCancelledOnFirstSend(database_url, takes_s=0.1)
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: 0.0)
    worker = dispatcher(database, clock, {"email": receiver}, rate_limits=limits)

    with caplog.at_level(logging.INFO, logger="herald.delivery.dispatcher"):
        report = asyncio.run(worker.run_once())

    assert statuses(database) == [CANCELLED, CANCELLED, SENT]
    assert (report.sent, report.deferred, report.cancelled) == (1, 0, 2)
    assert "round of 3 message(s): 1 sent, 0 to retry, 0 failed, 0 deferred, 2 cancelled" in [
        record.getMessage() for record in caplog.records
    ]
