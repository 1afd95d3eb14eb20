"""Retries and dead letters: backoff until a send succeeds, the failures that end a
message a dead letter, listing and retrying dead letters, and the attempts the audit shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.delivery.providers.webhook import WebhookProvider
from herald.domain.timeutil import to_micros
from herald.service.audit import user_audit
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, message, run_rounds, store
from tests.support.http_receiver import CannedResponse, HttpReceiver


def test_a_failing_provider_is_retried_with_backoff_until_it_succeeds(
    database: Database, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("u3")])
    with HttpReceiver() as receiver:
        receiver.respond_with(CannedResponse(503), CannedResponse(503), CannedResponse(200))
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        assert asyncio.run(worker.run_once()).retried == 1
        assert asyncio.run(worker.run_once()).claimed == 0  # not due before the backoff
        clock.now += timedelta(seconds=10)
        assert asyncio.run(worker.run_once()).retried == 1
        clock.now += timedelta(seconds=20)
        assert asyncio.run(worker.run_once()).sent == 1
        assert len(receiver.requests) == 3
    with ReadOnly(database) as read:
        row = message(database)
        attempts = read.outbox.attempts_for([row.message_id])[row.message_id]
    assert row.status == "sent" and row.attempts == 3
    assert [a.outcome for a in attempts] == ["retry", "retry", "sent"]
    assert "HTTP 503" in attempts[0].detail


def test_a_permanent_failure_is_a_dead_letter_until_retried_by_command(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("u4")])
    with HttpReceiver() as receiver:
        receiver.respond_with(CannedResponse(400, b'{"error": "bad number"}'))
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        assert asyncio.run(worker.run_once()).failed == 1
        dead = message(database)
        assert dead.status == "failed" and "HTTP 400" in dead.last_error
        result = CliRunner().invoke(
            cli, ["messages", "retry", "--failed", "--database", database_url]
        )
        assert result.exit_code == 0, result.output
        # the command uses the wall clock: the message is due now, long after the test's clock
        clock.now += timedelta(days=3650)
        receiver.respond_with(CannedResponse(200))
        assert asyncio.run(worker.run_once()).sent == 1
    assert message(database).status == "sent"
    # The audit says why a send that had failed for good went out after all, and why its
    # attempts count from 1 again: the re-queue left no trace of its own.
    [sent] = user_audit(database, "u4", limit=10, cursor=None)["messages"]
    assert [a["attempt"] for a in sent["delivery_attempts"]] == [1, 1]
    assert sent["hold_reason"].startswith("re-queued by `herald messages retry` at "), sent[
        "hold_reason"
    ]
    assert sent["hold_reason"].endswith(
        "after it was dead-lettered: its attempts count from 1 again"
    )


def test_dead_letters_are_listed_latest_first_with_their_errors(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    """``messages failed`` lists what an operator would retry, and says how many there are."""

    def failed(*options: str) -> Any:
        result = CliRunner().invoke(
            cli, ["messages", "failed", *options, "--database", database_url]
        )
        assert result.exit_code == 0, result.output
        return result

    assert "0 dead letter(s)" in failed().stderr
    with HttpReceiver() as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        store(database, clock, [funds_failure("u7")])
        receiver.respond_with(CannedResponse(400, b'{"error": "[bold]bad number"}'))
        assert asyncio.run(worker.run_once()).failed == 1
        clock.now += timedelta(minutes=5)
        store(database, clock, [funds_failure("u8")])
        receiver.respond_with(CannedResponse(422, b'{"error": "no such mailbox"}'))
        assert asyncio.run(worker.run_once()).failed == 1

    listed = [orjson.loads(line) for line in failed("--json").stdout.splitlines()]
    assert [letter["user_id"] for letter in listed] == ["u8", "u7"]
    assert "HTTP 422" in listed[0]["error"] and "no such mailbox" in listed[0]["error"]
    assert listed[0]["failed_at"] == "2025-11-03T12:05:00Z"
    assert listed[0]["attempts"] == 1 and listed[0]["rule"] == "INSUFFICIENT_FUNDS_EMAIL"

    latest = failed("--limit", "1", "--json")
    assert [orjson.loads(line)["user_id"] for line in latest.stdout.splitlines()] == ["u8"]
    assert "the latest 1 of 2 dead letter(s)" in latest.stderr

    said = failed().stdout.splitlines()
    assert said[2].startswith(f"{listed[1]['message_id']}  INSUFFICIENT_FUNDS_EMAIL  email")
    assert said[3].endswith('after 1 attempt(s): HTTP 400: {"error": "[bold]bad number"}')

    CliRunner().invoke(cli, ["messages", "retry", "--failed", "--database", database_url])
    assert failed("--json").stdout == "" and "0 dead letter(s)" in failed().stderr


def test_each_dead_letter_listed_as_json_survives_a_split_on_unicode_line_boundaries(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    """An id may hold U+2028 inside: raw, it cut the letter's JSON line in two for a
    script reading the listing with str.splitlines."""
    store(database, clock, [funds_failure("u\u20289", email="u9@example.com")])
    with HttpReceiver() as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        receiver.respond_with(CannedResponse(400, b'{"error": "no such mailbox"}'))
        assert asyncio.run(worker.run_once()).failed == 1

    result = CliRunner().invoke(cli, ["messages", "failed", "--json", "--database", database_url])

    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    letter = orjson.loads(line)
    assert letter["user_id"] == "u\u20289"
    assert "no such mailbox" in letter["error"]


def test_retrying_a_message_that_is_no_dead_letter_says_what_it_is(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    """``messages retry --message-id`` for a message waiting out its backoff, or sent, or
    for an id no message has: each is told apart, and nothing is re-queued."""
    store(database, clock, [funds_failure("u5")])

    def retry(message_id: str) -> str:
        result = CliRunner().invoke(
            cli, ["messages", "retry", "--message-id", message_id, "--database", database_url]
        )
        assert result.exit_code == 1, result.output
        return " ".join(result.output.split())

    with HttpReceiver([CannedResponse(503)]) as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        asyncio.run(worker.run_once())
        waiting = message(database)
        assert waiting.status == "pending" and waiting.attempts == 1

        said = retry(waiting.message_id)
        assert f"message {waiting.message_id} is pending, not a dead letter" in said
        assert "the dispatcher tries it again when it is due" in said
        assert message(database).due_us == waiting.due_us  # not re-queued

        clock.now += timedelta(minutes=10)
        assert asyncio.run(worker.run_once()).sent == 1
    said = retry(waiting.message_id)
    assert f"message {waiting.message_id} is sent, not a dead letter" in said
    assert message(database).status == "sent"

    assert "no message msg_unknown" in retry("msg_unknown")


def test_retrying_an_empty_message_id_is_refused_not_taken_for_nothing_to_do(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    """A script's ``--message-id "$ID"`` with ``ID`` unset was told "re-queued 0
    message(s)" and exit 0, as if the dead letter it meant had been dealt with."""
    store(database, clock, [funds_failure("u6")])
    with HttpReceiver([CannedResponse(400)]) as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        assert asyncio.run(worker.run_once()).failed == 1

    result = CliRunner().invoke(
        cli, ["messages", "retry", "--message-id", "", "--database", database_url]
    )

    assert result.exit_code == 2, result.output
    assert "--message-id needs the id of a dead letter" in " ".join(result.output.split())
    assert message(database).status == "failed"


def test_a_retried_dead_letter_gets_every_attempt_again_with_its_backoff(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("u6")])
    with HttpReceiver(default=CannedResponse(503)) as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        run_rounds(worker, clock, 3)
        assert message(database).status == "failed"

        result = CliRunner().invoke(
            cli, ["messages", "retry", "--failed", "--database", database_url]
        )
        assert result.exit_code == 0, result.output
        clock.now += timedelta(days=3650)  # the command re-queues on the wall clock
        asyncio.run(worker.run_once())
        assert asyncio.run(worker.run_once()).claimed == 0  # backing off again
        clock.now += timedelta(minutes=10)
        asyncio.run(worker.run_once())

        assert message(database).status == "pending"  # two of its three new attempts made
        assert len(receiver.requests) == 5
        clock.now += timedelta(minutes=10)
        asyncio.run(worker.run_once())
    row = message(database)
    assert row.status == "failed" and "gave up after 3 attempts" in row.last_error


def test_the_last_transient_failure_is_a_dead_letter(
    database: Database, clock: FixedClock, caplog: Any
) -> None:
    store(database, clock, [funds_failure("u5")])
    caplog.set_level("DEBUG", logger="herald.delivery")
    with HttpReceiver(default=CannedResponse(503)) as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        run_rounds(worker, clock, 3)
    row = message(database)
    assert row.status == "failed" and "gave up after 3 attempts" in row.last_error
    # Their lines name the message as a field too, which a JSON log is searched by; a
    # retry's at DEBUG, said at INFO with the round's others.
    told = [
        (r.levelname, r.message_id, r.channel)
        for r in caplog.records
        if "dead-lettered" in r.getMessage() or r.getMessage().startswith("message ")
    ]
    about = (row.message_id, "email")
    assert told == [("DEBUG", *about), ("DEBUG", *about), ("ERROR", *about)]
    rounds = [
        r.getMessage() for r in caplog.records if "message(s) will be retried" in r.getMessage()
    ]
    assert rounds == [
        "email: 1 message(s) will be retried: HTTP 503: {}; next attempt due in 10 s, at "
        "2025-11-03T12:00:10Z",
        "email: 1 message(s) will be retried: HTTP 503: {}; next attempt due in 20 s, at "
        "2025-11-03T12:10:20Z",
    ]


class _TimesOutItself:
    """A local provider whose own timeout fires: its error, not the claim's deadline."""

    name = "email:times-out"
    local = True

    async def send(self, request: Any) -> Any:
        raise TimeoutError("the provider's own timeout")

    async def aclose(self) -> None:
        return None


def test_a_provider_s_own_timeout_is_retried_as_its_error(
    database: Database, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("u7")])
    worker = dispatcher(database, clock, {"email": _TimesOutItself()})  # type: ignore[dict-item]

    assert asyncio.run(worker.run_once()).retried == 1
    assert (
        "provider error: TimeoutError: the provider's own timeout" in message(database).last_error
    )


@contextmanager
def refusing_to_mark_sent(database: Database, message_id: str) -> Iterator[str]:
    """The database refuses to record ``message_id`` as sent (as a constraint an operator
    added, or a value it cannot hold, would): a trigger on SQLite, a CHECK on PostgreSQL.
    Yields the first line of what the database says."""
    with database.writer.begin() as conn:
        if database.is_sqlite:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_sent BEFORE UPDATE OF status ON messages "
                f"WHEN NEW.message_id = '{message_id}' AND NEW.status = 'sent' "
                "BEGIN SELECT RAISE(ABORT, 'refused by refuse_sent'); END"
            )
            said = "refused by refuse_sent"
        else:
            conn.exec_driver_sql(
                "ALTER TABLE messages ADD CONSTRAINT refuse_sent "
                f"CHECK (message_id <> '{message_id}' OR status <> 'sent')"
            )
            said = 'violates check constraint "refuse_sent"'
    try:
        yield said
    finally:
        if not database.is_sqlite:  # the PostgreSQL database outlives the test
            with database.writer.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE messages DROP CONSTRAINT refuse_sent")


def test_a_message_whose_record_is_refused_costs_the_round_nothing_more(
    database: Database, clock: FixedClock, caplog: Any
) -> None:
    """The database refuses one message's record: the others of its round are recorded
    as sent and are not sent again once the claims' leases have run out; the refused one
    is a dead letter that says why, and the log names it without the user's data."""
    store(database, clock, [funds_failure(user) for user in ("ana", "bea", "cruz")])
    refused = message_id_for_user(database, "bea")
    caplog.set_level("INFO", logger="herald.delivery")
    with refusing_to_mark_sent(database, refused) as said, HttpReceiver() as receiver:
        provider = WebhookProvider("email", receiver.url, secret=None)
        worker = dispatcher(database, clock, {"email": provider}, lease_seconds=1)
        for _ in range(2):  # the second round after every lease of the first ran out
            with suppress(Exception):  # as ``run`` does: a failed round is logged, and over
                asyncio.run(worker.run_once())
            clock.now += timedelta(seconds=2)
        assert len(receiver.requests) == 3  # none sent twice
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT message_id, status, last_error, claimed_by FROM messages"
        ).all()
    status = {message_id: (state, claimed) for message_id, state, _, claimed in rows}
    assert sorted(status.values()) == [("failed", None), ("sent", None), ("sent", None)]
    assert status[refused] == ("failed", None)
    [reason] = [error for message_id, _, error, _ in rows if message_id == refused]
    assert reason.startswith("its outcome (sent) could not be recorded")
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert refused in logged.getMessage() and said in logged.getMessage()
    assert "bea@example.com" not in caplog.text


def message_id_for_user(database: Database, user_id: str) -> str:
    with ReadOnly(database) as read:
        [(message_id,)] = read.connection.exec_driver_sql(
            f"SELECT message_id FROM messages WHERE user_id = '{user_id}'"
        ).all()
    return str(message_id)


def test_the_audit_lists_a_requeued_message_s_attempts_in_the_order_they_were_made(
    database: Database, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("a1")])
    with HttpReceiver(default=CannedResponse(503)) as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        run_rounds(worker, clock, 3)  # three attempts, the last a dead letter
        with UnitOfWork(database) as uow:
            assert uow.outbox.requeue(now_us=to_micros(clock())) == 1
            uow.commit()
        run_rounds(worker, clock, 2)  # two of the three new attempts
    audit = user_audit(database, "a1", limit=100, cursor=None)
    assert audit is not None
    [shown] = audit["messages"]
    attempts = [(a["attempt"], a["outcome"]) for a in shown["delivery_attempts"]]
    assert attempts == [(1, "retry"), (2, "retry"), (3, "failed"), (1, "retry"), (2, "retry")]
    times = [a["at"] for a in shown["delivery_attempts"]]
    assert times == sorted(times)


def test_dead_letters_listed_as_text_escape_what_would_reach_the_terminal(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    """A receiver's answer quoted in the error reached the operator's terminal as it was
    sent: an escape sequence in it could rewrite the screen, and a line break split the
    letter's two lines; an id's U+2028 split them for a reader of the listing too."""
    store(database, clock, [funds_failure("u\u20289", email="u9@example.com")])
    with HttpReceiver() as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        receiver.respond_with(CannedResponse(400, b"\x1b[2Jbad\x07 \xe2\x80\xaemailbox"))
        assert asyncio.run(worker.run_once()).failed == 1

    result = CliRunner().invoke(cli, ["messages", "failed", "--database", database_url])

    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()
    assert first.endswith("user u\\u20289")
    assert second.endswith("HTTP 400: \\x1b[2Jbad\\x07 \\u202emailbox")
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout


class _Raising:
    """A local provider with a bug: every send raises."""

    name = "email:raising"
    local = True

    async def send(self, request: Any) -> Any:
        raise ValueError("a bug in the provider")

    async def aclose(self) -> None:
        return None


def test_a_raising_provider_logs_its_traceback_once_a_minute_not_once_a_message(
    database: Database, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider bug raised for each of a backlog's messages, and each logged its own
    traceback: a round of 5 wrote 5, burying the rest of the log."""
    store(database, clock, [funds_failure(f"u{n}") for n in range(5)])
    worker = dispatcher(database, clock, {"email": _Raising()})  # type: ignore[dict-item]

    def tracebacks() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]

    with caplog.at_level(logging.DEBUG, logger="herald"):
        assert asyncio.run(worker.run_once()).retried == 5
        assert len(tracebacks()) == 1
        assert tracebacks()[0].getMessage().startswith("provider email:raising raised")
        [said] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("email:")]
        assert said.startswith(
            "email: 5 message(s) will be retried: provider error: ValueError: a bug in the provider"
        )
        assert message(database).last_error == "provider error: ValueError: a bug in the provider"

        clock.now += timedelta(seconds=30)  # the retries are due; the same bug, a round later
        assert asyncio.run(worker.run_once()).retried == 5
        assert len(tracebacks()) == 1

        clock.now += timedelta(seconds=60)  # its last attempt: dead letters
        assert asyncio.run(worker.run_once()).failed == 5
        assert len(tracebacks()) == 2
