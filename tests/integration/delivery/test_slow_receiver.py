"""A receiver slow to answer one message holds back neither the other channels nor the
other messages of its own: the dispatcher claims, sends and records them meanwhile, its
rate limits drain a backlog at their rate, and a stop still waits for the slow send and
records it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from herald.delivery.dispatcher import Dispatcher
from herald.delivery.providers.stub import StubProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.ratelimit import ChannelRateLimits
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, link_after_signup, store
from tests.support.http_receiver import CannedResponse, HttpReceiver, ReceivedRequest

# Long beside what the other sends need (a claim every quarter second, a recording every
# quarter second), so that a busy machine does not make them look late.
SLOW_S = 3.0


class WallClock(FixedClock):
    """The time now: the rate limits and the receivers' delays are in real seconds."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)


class SlowForOneUser(HttpReceiver):
    """Answers the messages to ``user`` after ``SLOW_S``, the others at once, in whatever
    order the concurrent requests arrive."""

    def __init__(self, user: str) -> None:
        super().__init__()
        self._slow_user = user

    def _record(self, request: ReceivedRequest) -> CannedResponse:
        super()._record(request)
        if request.json()["user_id"] == self._slow_user:
            return CannedResponse(delay=SLOW_S)
        return self.default


def statuses(database: Database) -> dict[tuple[str, str], tuple[str, int | None]]:
    """Each message's status and time sent (microseconds), by its user and channel."""
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT user_id, channel, status, sent_us FROM messages"
        ).all()
    return {(user, channel): (status, sent_us) for user, channel, status, sent_us in rows}


async def until(done: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        await asyncio.sleep(0.02)


def delivering(worker: Dispatcher, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` while ``worker`` delivers; then stop it, as Ctrl-C does."""

    async def run() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        try:
            await scenario()
        finally:
            stopping.set()
            await running

    asyncio.run(run())


def test_a_slow_receiver_holds_back_no_other_channel(database: Database, clock: FixedClock) -> None:
    """The SMS gateway takes seconds over one message; emails arriving meanwhile go to
    their own receiver and are recorded sent while it has not answered, and the stop
    waits for its answer and records it."""
    store(database, clock, link_after_signup("slow"))  # an SMS (and no email: no address)
    with (
        HttpReceiver([CannedResponse(delay=SLOW_S)]) as gateway,
        HttpReceiver() as mail,
    ):
        worker = dispatcher(
            database,
            WallClock(),
            {
                "sms": WebhookProvider("sms", gateway.url, secret=None),
                "email": WebhookProvider("email", mail.url, secret=None),
            },
        )

        async def scenario() -> None:
            await until(lambda: len(gateway.requests) == 1, within_s=SLOW_S)
            store(database, clock, [funds_failure(f"u{i}") for i in range(5)])
            worker.wake()
            await until(
                lambda: (
                    [statuses(database)[(f"u{i}", "email")][0] for i in range(5)] == ["sent"] * 5
                ),
                within_s=SLOW_S,
            )
            # The emails were sent and recorded before the gateway's answer came.
            assert len(mail.requests) == 5
            assert statuses(database)[("slow", "sms")][0] == "sending"

        delivering(worker, scenario)

    assert statuses(database)[("slow", "sms")][0] == "sent"


def test_a_slow_answer_holds_back_no_other_message_of_its_channel(
    database: Database, clock: FixedClock
) -> None:
    """The receiver takes seconds over the first email; those stored after it was sent
    go to the same receiver and are recorded sent before that answer comes."""
    store(database, clock, [funds_failure("slow")])
    with HttpReceiver([CannedResponse(delay=SLOW_S)]) as receiver:
        worker = dispatcher(
            database,
            WallClock(),
            {"email": WebhookProvider("email", receiver.url, secret=None)},
        )

        async def scenario() -> None:
            await until(lambda: len(receiver.requests) == 1, within_s=SLOW_S)
            store(database, clock, [funds_failure(f"u{i}") for i in range(5)])
            worker.wake()
            await until(
                lambda: (
                    [statuses(database)[(f"u{i}", "email")][0] for i in range(5)] == ["sent"] * 5
                ),
                within_s=SLOW_S,
            )
            assert statuses(database)[("slow", "email")][0] == "sending"

        delivering(worker, scenario)

    assert statuses(database)[("slow", "email")][0] == "sent"
    assert len(receiver.requests) == 6  # each once


def test_a_rate_limited_backlog_drains_at_its_rate_behind_a_slow_send(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """30 SMS at 5 a second, behind an email whose receiver takes 10 s to answer: all
    are sent before that answer, and no faster than the rate allows. A round used to
    last as long as its slowest send: those left after the burst waited for the answer."""
    slow_s, rate, count = 10.0, 5.0, 30
    store(database, clock, [funds_failure("slow")])
    limits = ChannelRateLimits.from_rates({"sms": (rate, int(rate))}, time.monotonic)
    with HttpReceiver([CannedResponse(delay=slow_s)]) as receiver:
        worker = dispatcher(
            database,
            WallClock(),
            {
                "email": WebhookProvider("email", receiver.url, secret=None),
                "sms": StubProvider(tmp_path / "sms.jsonl"),
            },
            rate_limits=limits,
        )

        async def scenario() -> None:
            await until(lambda: len(receiver.requests) == 1, within_s=slow_s)
            store(database, clock, [e for i in range(count) for e in link_after_signup(f"s{i}")])
            worker.wake()
            await until(
                lambda: (
                    sum(
                        status == "sent"
                        for (_, channel), (status, _) in statuses(database).items()
                        if channel == "sms"
                    )
                    == count
                ),
                within_s=slow_s,
            )
            assert statuses(database)[("slow", "email")][0] == "sending"

        delivering(worker, scenario)

    sent = sorted(
        sent_us or 0
        for (_, channel), (_, sent_us) in statuses(database).items()
        if channel == "sms"
    )
    # The burst at once, then the other 25 a fifth of a second apart: 5 s.
    assert (sent[-1] - sent[0]) / 1e6 >= (count - rate) / rate - 1
    assert len((tmp_path / "sms.jsonl").read_text().splitlines()) == count


def test_a_slow_receiver_with_every_slot_of_its_channel_taken_holds_back_no_other(
    database: Database, clock: FixedClock
) -> None:
    """Sends one at a time on each channel: the SMS gateway's slow answer takes its
    channel's only slot, and the emails claimed with it still go out at once, each
    channel having slots of its own."""
    store(database, clock, link_after_signup("slow"))
    store(database, clock, [funds_failure(f"u{i}") for i in range(3)])
    with (
        HttpReceiver(default=CannedResponse(delay=SLOW_S)) as gateway,
        HttpReceiver() as mail,
    ):
        worker = dispatcher(
            database,
            WallClock(),
            {
                "sms": WebhookProvider("sms", gateway.url, secret=None),
                "email": WebhookProvider("email", mail.url, secret=None),
            },
            concurrency=1,
        )

        async def scenario() -> None:
            await until(
                lambda: (
                    [statuses(database)[(f"u{i}", "email")][0] for i in range(3)] == ["sent"] * 3
                ),
                within_s=SLOW_S,
            )
            assert statuses(database)[("slow", "sms")][0] == "sending"

        delivering(worker, scenario)

    assert statuses(database)[("slow", "sms")][0] == "sent"


def test_the_sends_of_a_round_that_ended_are_recorded_before_its_slowest_answers(
    database: Database, clock: FixedClock
) -> None:
    """One round, its first send slow: the others are recorded sent while it is still
    under way, rather than all together once it has answered (a dispatcher killed
    meanwhile would have sent them all again)."""
    store(database, clock, [funds_failure("slow"), *(funds_failure(f"u{i}") for i in range(5))])
    with SlowForOneUser("slow") as receiver:
        worker = dispatcher(
            database,
            WallClock(),
            {"email": WebhookProvider("email", receiver.url, secret=None)},
        )

        async def one_round() -> None:
            sending = asyncio.create_task(worker.run_once())
            await until(
                lambda: (
                    [statuses(database)[(f"u{i}", "email")][0] for i in range(5)] == ["sent"] * 5
                ),
                within_s=SLOW_S,
            )
            assert statuses(database)[("slow", "email")][0] == "sending"
            report = await sending
            assert (report.claimed, report.sent) == (6, 6)

        asyncio.run(one_round())

    assert statuses(database)[("slow", "email")][0] == "sent"


def test_a_dispatcher_claims_no_more_than_a_round_beyond_the_sends_under_way(
    database: Database, clock: FixedClock
) -> None:
    """Rounds of 4 at one send at a time, every answer slow: it claims the first round,
    and no more until the receiver answers (a claim takes at least half a round, and at
    most what leaves a round waiting); claimed further, the messages would only wait
    while their leases ran. Stopped, it sends none of those waiting."""
    store(database, clock, [funds_failure(f"u{i}") for i in range(10)])
    with HttpReceiver(default=CannedResponse(delay=SLOW_S)) as receiver:
        worker = dispatcher(
            database,
            WallClock(),
            {"email": WebhookProvider("email", receiver.url, secret=None)},
            batch_size=4,
            concurrency=1,
        )

        def claimed() -> int:
            return sum(status == "sending" for status, _ in statuses(database).values())

        async def scenario() -> None:
            await until(lambda: len(receiver.requests) == 1, within_s=SLOW_S)
            await until(lambda: claimed() == 4, within_s=SLOW_S)
            await asyncio.sleep(1)  # four claims' worth of time
            assert claimed() == 4

        delivering(worker, scenario)
        assert len(receiver.requests) == 1

    assert sorted(status for status, _ in statuses(database).values()) == ["pending"] * 9 + ["sent"]


class StalledUntil(HttpReceiver):
    """Holds every request that arrives before ``release_at`` (``time.monotonic``) until
    then, and answers those after at once: a receiver that stalls, then catches up."""

    def __init__(self, release_at: float) -> None:
        super().__init__()
        self._release_at = release_at
        self.arrivals: list[float] = []

    def _record(self, request: ReceivedRequest) -> CannedResponse:
        super()._record(request)
        now = time.monotonic()
        with self._lock:
            self.arrivals.append(now)
        return CannedResponse(delay=max(0.0, self._release_at - now))


def test_a_receiver_that_stalls_then_catches_up_gets_no_burst_past_the_rate(
    database: Database, clock: FixedClock
) -> None:
    """At 1 SMS a second with four sends at once, the gateway stalls: four sends wait on
    it, and the messages due meanwhile wait for a slot. When it answers them all at once,
    those waiting go out at the rate, not together: a message used to take its turn of
    the rate before it waited for a slot, and the turns taken during the stall were all
    spent in the same instant, four requests at a gateway that allows one a second."""
    rate, slots, stall_s = 1.0, 4, 7.0
    store(database, clock, [e for i in range(8) for e in link_after_signup(f"s{i}")])
    limits = ChannelRateLimits.from_rates({"sms": (rate, int(rate))}, time.monotonic)
    with StalledUntil(time.monotonic() + stall_s) as gateway:
        worker = dispatcher(
            database,
            WallClock(),
            {"sms": WebhookProvider("sms", gateway.url, secret=None)},
            rate_limits=limits,
            concurrency=slots,
        )

        async def scenario() -> None:
            await until(lambda: len(gateway.requests) == 8, within_s=stall_s + 8 / rate + 3)

        delivering(worker, scenario)

    arrivals = sorted(gateway.arrivals)
    # In any half second the gateway gets at most the burst (one) and one more turn.
    crowded = max(sum(1 for t in arrivals if first <= t < first + 0.5) for first in arrivals)
    assert crowded <= 2, [round(t - arrivals[0], 2) for t in arrivals]
