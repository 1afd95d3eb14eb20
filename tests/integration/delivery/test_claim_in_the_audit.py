"""The audit of a message being sent names the dispatcher that claimed it and when its
claim runs out: a dispatcher killed mid-send leaves its messages `sending` until then,
and the audit said nothing else of them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from herald.delivery.providers.webhook import WebhookProvider
from herald.service.audit import user_audit
from herald.store.database import Database
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, store
from tests.support.http_receiver import CannedResponse, HttpReceiver

SLOW_S = 3.0


class WallClock(FixedClock):
    def __call__(self) -> datetime:
        return datetime.now(UTC)


def audited_message(database: Database, user: str) -> dict[str, Any]:
    page = user_audit(database, user, limit=10, cursor=None)
    assert page is not None
    [message] = page["messages"]
    return message


def test_a_message_being_sent_shows_its_claim_and_one_sent_shows_none(
    database: Database, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("ana")])
    with HttpReceiver([CannedResponse(delay=SLOW_S)]) as receiver:
        worker = dispatcher(
            database,
            WallClock(),
            {"email": WebhookProvider("email", receiver.url, secret=None)},
            worker_id="vm:41-abc",
        )

        async def scenario() -> dict[str, Any]:
            sending = asyncio.create_task(worker.run_once())
            deadline = time.monotonic() + SLOW_S
            while not receiver.requests:
                assert time.monotonic() < deadline, "never sent"
                await asyncio.sleep(0.02)
            under_way = await asyncio.to_thread(audited_message, database, "ana")
            await sending
            return under_way

        started = datetime.now(UTC)
        under_way = asyncio.run(scenario())
        finished = datetime.now(UTC)

    assert under_way["status"] == "sending"
    claim = under_way["claim"]
    assert claim["dispatcher"] == "vm:41-abc"
    until = datetime.fromisoformat(claim["until"])
    # A lease of 60 s from the claim, made between the two.
    lease = timedelta(seconds=60)
    assert started + lease <= until <= finished + lease
    sent = audited_message(database, "ana")
    assert (sent["status"], sent["claim"]) == ("sent", None)
