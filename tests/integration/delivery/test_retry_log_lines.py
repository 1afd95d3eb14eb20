"""What the dispatcher's log says while a receiver refuses every message: a line per
channel and error for the messages of a round put back for a retry (for each group of
them recorded together: a round's sends are recorded as they end, every 0.25 s, so a
busy machine can split a round in two), not a line per message
(a backlog of thousands flooded the log with near-identical lines), while each dead
letter keeps a line of its own, and every attempt is still counted and audited."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from datetime import timedelta

import pytest

from herald.delivery.provider import DeliveryStatus
from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, store
from tests.support.ports import refused_port
from tests.support.smtp_sink import SmtpSink

ROUND_OF = 12


def message_ids(database: Database) -> set[str]:
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql("SELECT message_id FROM messages").all()
    return {message_id for (message_id,) in rows}


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The dispatcher's lines at ``level`` but its line per round ("round of ...")."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "herald.delivery.dispatcher"
        and r.levelno == level
        and not r.getMessage().startswith("round of ")
    ]


_RETRIED = re.compile(r"email: (\d+) message\(s\) will be retried: (.*)")


def retried(caplog: pytest.LogCaptureFixture) -> tuple[int, set[str]]:
    """How many messages the INFO lines say will be retried, and what they say of them."""
    said = [_RETRIED.fullmatch(line) for line in lines(caplog, logging.INFO)]
    assert all(said), lines(caplog, logging.INFO)
    return sum(int(m[1]) for m in said if m), {m[2] for m in said if m}


def test_a_round_refused_by_a_down_webhook_is_one_line_and_each_dead_letter_its_own(
    database: Database, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    store(database, clock, [funds_failure(f"down{i}") for i in range(ROUND_OF)])
    ids = message_ids(database)
    counted: Counter[str] = Counter()
    caplog.set_level(logging.DEBUG, logger="herald.delivery")
    with refused_port() as port:
        provider = WebhookProvider("email", f"http://127.0.0.1:{port}/hook", secret=None)
        worker = dispatcher(
            database,
            clock,
            {"email": provider},
            on_result=lambda _channel, status: counted.update([status.value]),
        )
        assert asyncio.run(worker.run_once()).retried == ROUND_OF

        # The round's own line: it sent nothing, and said "delivered 12 message(s)".
        [round_line] = [r.getMessage() for r in caplog.records if "message(s): " in r.getMessage()]
        assert round_line == (
            f"round of {ROUND_OF} message(s): 0 sent, {ROUND_OF} to retry, 0 failed, "
            "0 deferred, 0 cancelled"
        )
        total, [said] = retried(caplog)
        assert total == ROUND_OF and len(lines(caplog, logging.INFO)) < ROUND_OF
        assert said.startswith("connection failed:")
        # The test's policy waits 10 s after a first failure, without jitter.
        assert said.endswith("; next attempt due in 10 s, at 2025-11-03T12:00:10Z")
        # Each message's own line is there for whoever looks at DEBUG.
        detailed = [r for r in caplog.records if r.levelno == logging.DEBUG]
        assert {r.message_id for r in detailed if "will be retried" in r.getMessage()} == ids

        caplog.clear()
        clock.now += timedelta(minutes=10)
        assert asyncio.run(worker.run_once()).retried == ROUND_OF
        total, said_again = retried(caplog)
        assert total == ROUND_OF and len(said_again) == 1

        caplog.clear()
        clock.now += timedelta(minutes=10)
        assert asyncio.run(worker.run_once()).failed == ROUND_OF  # the policy's third and last

    # A dead letter is a message lost until an operator re-queues it: a line each, as before.
    dead = lines(caplog, logging.ERROR)
    assert len(dead) == ROUND_OF and lines(caplog, logging.INFO) == []
    assert {line.split()[1] for line in dead} == ids
    assert all("dead-lettered: gave up after 3 attempts: connection failed" in x for x in dead)
    # Each names its rule and user: what an operator weighs before re-queueing it.
    named = {line.split(" dead-lettered")[0].split(" (", 1)[1] for line in dead}
    assert named == {f"INSUFFICIENT_FUNDS_EMAIL for user down{i})" for i in range(ROUND_OF)}
    # Every attempt is counted and kept in the audit all the same.
    assert counted == {"retry": 2 * ROUND_OF, "failed": ROUND_OF}
    with ReadOnly(database) as read:
        attempts = read.outbox.attempts_for(sorted(ids))
    assert {len(made) for made in attempts.values()} == {3} and attempts.keys() == ids
    assert all(
        [a.outcome for a in made] == ["retry", "retry", "failed"] for made in attempts.values()
    )


def test_a_relay_refusing_each_recipient_is_one_line_for_the_round(
    database: Database, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay's refusal names each recipient: still one error, said once for the round."""
    store(database, clock, [funds_failure(f"greylisted{i}") for i in range(ROUND_OF)])
    counted: list[DeliveryStatus] = []
    caplog.set_level(logging.INFO, logger="herald.delivery")
    with SmtpSink() as sink:
        sink.rcpt_reply = "451 4.7.1 greylisted, try again later"
        smtp = SmtpProvider("email", sink.host, sink.port, sender="herald@example.com")
        worker = dispatcher(
            database, clock, {"email": smtp}, on_result=lambda _c, status: counted.append(status)
        )
        assert asyncio.run(worker.run_once()).retried == ROUND_OF

    assert retried(caplog) == (
        ROUND_OF,
        {
            "<recipient> refused: SMTP 451: 4.7.1 greylisted, try again later; next attempt "
            "due in 10 s, at 2025-11-03T12:00:10Z"
        },
    )
    assert len(lines(caplog, logging.INFO)) < ROUND_OF
    assert counted == [DeliveryStatus.RETRY] * ROUND_OF
    # Herald's lines, not the test relay's own (its logger says every recipient, and is
    # captured too once an earlier test has turned its level to INFO).
    said = [r.getMessage() for r in caplog.records if r.name.startswith("herald")]
    assert not any("greylisted0@example.com" in line for line in said)


def test_a_relay_refusing_each_recipient_at_an_international_domain_is_one_line_for_the_round(
    database: Database, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay is given, and quotes, the domain's ASCII form (``xn--...``), not the one the
    trait holds: each recipient had a line of its own."""
    events = [funds_failure(f"u{i}", email=f"greylisted{i}@bücher.example") for i in range(4)]
    store(database, clock, events)
    caplog.set_level(logging.INFO, logger="herald.delivery")
    with SmtpSink() as sink:
        sink.rcpt_reply = "451 4.7.1 greylisted, try again later"
        smtp = SmtpProvider("email", sink.host, sink.port, sender="herald@example.com")
        assert asyncio.run(dispatcher(database, clock, {"email": smtp}).run_once()).retried == 4

    assert retried(caplog) == (
        4,
        {
            "<recipient> refused: SMTP 451: 4.7.1 greylisted, try again later; next attempt "
            "due in 10 s, at 2025-11-03T12:00:10Z"
        },
    )
