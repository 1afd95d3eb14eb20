"""The dispatcher end to end: real SMTP and HTTP peers on loopback, a clock moved by hand."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, time, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from herald import bootstrap
from herald.api.schemas import AuditOut
from herald.cli.main import app as cli
from herald.delivery.backoff import RetryPolicy
from herald.delivery.dispatcher import Dispatcher
from herald.delivery.outcomes import DispatchReport
from herald.delivery.provider import DeliveryResult, DeliveryStatus, Provider, SendRequest
from herald.delivery.quiet_hours import QuietHours, hold_policy
from herald.delivery.ratelimit import ChannelRateLimits
from herald.delivery.setup import build_delivery
from herald.delivery.signing import SIGNATURE_HEADER, verify
from herald.delivery.smtp import SmtpProvider
from herald.delivery.stub import LogAlertProvider, StubProvider
from herald.delivery.webhook import WebhookProvider
from herald.domain.model import Event
from herald.domain.timeutil import parse_timestamp, to_micros
from herald.rules.loader import default_rules_path, load_ruleset
from herald.service.audit import user_audit
from herald.service.ingest import ingest
from herald.service.preferences import set_unsubscribes
from herald.service.writer import IngestFailed
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock
from tests.support.events import opted_in_signup
from tests.support.http_receiver import CannedResponse, HttpReceiver
from tests.support.processes import connections_refused, scratch_postgres_database
from tests.support.smtp_sink import SmtpSink

RULES = load_ruleset()


def funds_failure(user: str, day: int = 3, **traits: Any) -> Event:
    return Event(
        event_id=f"pf-{user}-{day}",
        user_id=user,
        event_type="payment_failed",
        timestamp=parse_timestamp(f"2025-11-{day:02d}T10:00:00Z"),
        properties={"amount": 12.5, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        user_traits={"email": f"{user}@example.com", **traits},
    )


def link_after_signup(user: str) -> list[Event]:
    traits = {"phone": "+351910000001", "marketing_opt_in": True}
    signup = Event(
        f"s-{user}", user, "signup_completed", parse_timestamp("2025-11-03T09:00:00Z"), {}, traits
    )
    link = Event(
        f"l-{user}", user, "link_bank_success", parse_timestamp("2025-11-03T10:00:00Z"), {}, traits
    )
    return [signup, link]


def store(database: Database, clock: FixedClock, events: list[Event]) -> None:
    with UnitOfWork(database) as uow:
        ingest(uow, events, RULES, now=clock())
        uow.commit()


# The providers a test delivered with, closed once it ends, as a runtime closes its own when
# it stops: a stub's file, an SMTP provider's pooled connections.
_IN_USE: list[Provider] = []


@pytest.fixture(autouse=True)
def _providers_closed() -> Iterator[None]:
    yield

    async def close_all() -> None:
        for provider in _IN_USE:
            await provider.aclose()

    try:
        asyncio.run(close_all())
    finally:
        _IN_USE.clear()


def close_after_test(providers: Iterable[Provider]) -> None:
    _IN_USE.extend(providers)


def dispatcher(
    database: Database, clock: FixedClock, providers: dict[str, Provider], **options: Any
) -> Dispatcher:
    options.setdefault("retry", RetryPolicy(max_attempts=3, base=10, jitter=0))
    close_after_test(providers.values())
    return Dispatcher(
        database, providers, worker_id=options.pop("worker_id", "w1"), clock=clock, **options
    )


def run_rounds(worker: Dispatcher, clock: FixedClock, rounds: int) -> None:
    """``rounds`` rounds, ten minutes apart: past any backoff of the test policy."""
    for _ in range(rounds):
        asyncio.run(worker.run_once())
        clock.now += timedelta(minutes=10)


def message(database: Database, message_id: str | None = None) -> Any:
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql("SELECT message_id FROM messages").all()
        return read.outbox.get(message_id or rows[0][0])


def test_email_goes_through_a_real_smtp_server(database: Database, clock: FixedClock) -> None:
    store(database, clock, [funds_failure("u1", first_name="Maria")])
    with SmtpSink() as sink:
        smtp = SmtpProvider(
            "email", sink.host, sink.port, sender="herald@example.com", reply_to="help@example.com"
        )
        report = asyncio.run(dispatcher(database, clock, {"email": smtp}).run_once())
        assert report.sent == 1
        [received] = sink.messages
        server = f"{sink.host}:{sink.port}"
    email = received.message
    assert email["To"] == "u1@example.com" and email["Reply-To"] == "help@example.com"
    assert email["Subject"] == "Your payment could not be completed"
    assert message(database).message_id in email["Message-ID"]
    assert "Hi Maria" in email.get_body(("plain",)).get_content()
    assert "<strong>12.50</strong>" in email.get_body(("html",)).get_content()
    sent = message(database)
    assert sent.status == "sent"
    with ReadOnly(database) as read:
        [attempt] = read.outbox.attempts_for([sent.message_id])[sent.message_id]
    # The audit names the email as the server knows it.
    assert attempt.detail == f"accepted by {server} (reference {email['Message-ID']})"


def test_sms_goes_to_a_signed_webhook_with_the_message_id_as_idempotency_key(
    database: Database, clock: FixedClock
) -> None:
    store(database, clock, link_after_signup("u2"))
    with HttpReceiver() as receiver:
        webhook = WebhookProvider("sms", receiver.url + "/sms", secret=b"shh")
        asyncio.run(
            dispatcher(
                database, clock, {"sms": webhook, "email": StubProvider(Path("/dev/null"))}
            ).run_once()
        )
        [request] = receiver.requests
    assert request.json()["recipient"] == "+351910000001"
    assert request.json()["rule"] == "BANK_LINK_NUDGE_SMS"
    assert request.headers["idempotency-key"] == request.json()["message_id"]
    signature = request.headers[SIGNATURE_HEADER.lower()]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert verify(b"shh", signature, request.body, now=timestamp)


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
    caplog.set_level("INFO", logger="herald.delivery")
    with HttpReceiver(default=CannedResponse(503)) as receiver:
        worker = dispatcher(
            database, clock, {"email": WebhookProvider("email", receiver.url, secret=None)}
        )
        run_rounds(worker, clock, 3)
    row = message(database)
    assert row.status == "failed" and "gave up after 3 attempts" in row.last_error
    # Their lines name the message as a field too, which a JSON log is searched by.
    told = [
        (r.levelname, r.message_id, r.channel)
        for r in caplog.records
        if "dead-lettered" in r.getMessage() or "will be retried" in r.getMessage()
    ]
    about = (row.message_id, "email")
    assert told == [("INFO", *about), ("INFO", *about), ("ERROR", *about)]


def test_the_stub_outbox_file_is_readable_by_its_owner_alone(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """It holds each recipient and message in full: under the usual umask (022) it was
    created readable by every user of the machine."""
    store(database, clock, [funds_failure("u1")])
    outbox = tmp_path / "outbox.jsonl"
    previous = os.umask(0o022)
    try:
        assert (
            asyncio.run(
                dispatcher(database, clock, {"email": StubProvider(outbox)}).run_once()
            ).sent
            == 1
        )
    finally:
        os.umask(previous)

    assert "u1@example.com" in outbox.read_text()
    assert outbox.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("how", ["deleted", "rotated"])
def test_the_stub_writes_to_a_new_outbox_file_once_its_file_is_deleted_or_rotated(
    database: Database, clock: FixedClock, tmp_path: Path, how: str
) -> None:
    """Its file stayed open: every later send went to the deleted or renamed file, where
    no one looked, and was recorded as sent."""
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(database, clock, {"email": StubProvider(outbox)})
    store(database, clock, [funds_failure("u1")])
    assert asyncio.run(worker.run_once()).sent == 1
    if how == "deleted":
        outbox.unlink()
    else:
        outbox.rename(tmp_path / "outbox.jsonl.1")

    store(database, clock, [funds_failure("u2")])
    assert asyncio.run(worker.run_once()).sent == 1

    assert "u2@example.com" in outbox.read_text()
    assert "u1@example.com" not in outbox.read_text()


def test_a_rate_limited_channel_drains_its_backlog_at_its_rate(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    store(database, clock, [funds_failure(f"r{i}") for i in range(5)])
    seconds = [0.0]
    limits = ChannelRateLimits.from_rates({"email": (2.0, 2)}, lambda: seconds[0])
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(database, clock, {"email": StubProvider(outbox)}, rate_limits=limits)
    sent_per_second = []
    for _ in range(3):
        sent_per_second.append(asyncio.run(worker.run_once()).sent)
        seconds[0] += 1.0
        clock.now += timedelta(seconds=1)
    assert sent_per_second == [2, 2, 1]
    assert len(outbox.read_text().splitlines()) == 5


def test_each_message_a_rate_limit_defers_gets_a_turn_of_its_own(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    # Deferred all to the next free slot, a backlog came back at once: one was sent and
    # every other one rewritten again, each second, for as long as the backlog lasted.
    store(database, clock, [funds_failure(f"q{i}") for i in range(6)])
    limits = ChannelRateLimits.from_rates({"email": (1.0, 1)}, lambda: 0.0)
    worker = dispatcher(
        database, clock, {"email": StubProvider(tmp_path / "o.jsonl")}, rate_limits=limits
    )

    first = asyncio.run(worker.run_once())
    again = asyncio.run(worker.run_once())

    assert (first.sent, first.deferred) == (1, 5)
    assert again.claimed == 0  # none is due before its turn: the backlog is left alone
    with ReadOnly(database) as read:
        waiting = read.connection.exec_driver_sql(
            "SELECT due_us, created_us, hold_reason FROM messages WHERE status = 'pending' "
            "ORDER BY created_us, message_id"
        ).all()
    assert sorted(due - created for due, created, _ in waiting) == [
        n * 1_000_000 for n in range(1, 6)
    ]
    assert waiting[0].hold_reason.startswith("email rate limit: its turn is in ")


class GatedProvider:
    """A remote provider whose sends wait until the test opens the gate."""

    name = "gated"
    local = False

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = asyncio.Event()

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.started.append(request.message_id)
        await self.gate.wait()
        return DeliveryResult.sent("through the gate")

    async def aclose(self) -> None:
        pass


def test_a_stopping_dispatcher_finishes_the_sends_under_way_and_starts_no_other(
    database: Database, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure(f"s{i}") for i in range(3)])
    provider = GatedProvider()
    worker = dispatcher(database, clock, {"email": provider}, concurrency=1)

    async def scenario() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        while not provider.started:
            await asyncio.sleep(0.01)
        stopping.set()  # as SIGTERM does, with one send under way
        provider.gate.set()
        await asyncio.wait_for(running, 5)

    asyncio.run(scenario())
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT message_id, status, attempts, claimed_by FROM messages"
        ).all()
    assert len(provider.started) == 1
    assert sorted((status, attempts, claimed) for _, status, attempts, claimed in rows) == [
        ("pending", 0, None),
        ("pending", 0, None),
        ("sent", 1, None),
    ]
    assert [m for m, status, *_ in rows if status == "sent"] == provider.started


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
    assert rows[1].last_error.startswith("the user's traits closed email")


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
    assert row.last_error == "not sent: the user closed sms to marketing after it was decided"


RATE_NOTE = (
    "rate limits are this process's own: email 2/s, sms 0.5/s; "
    "N processes delivering send up to N times that (set a channel's rate to its limit / N)"
)


def run_until_stopped(worker: Dispatcher) -> None:
    async def scenario() -> None:
        stopping = asyncio.Event()
        stopping.set()  # one look at the outbox, then stop
        await worker.run(stopping)

    asyncio.run(scenario())


def test_a_dispatcher_says_once_at_start_that_its_rate_limits_are_its_own(
    database: Database, clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    limits = ChannelRateLimits.from_rates({"email": (2.0, 2), "sms": (0.5, 1)}, lambda: 0.0)
    stub = StubProvider(tmp_path / "outbox.jsonl")
    worker = dispatcher(database, clock, {"email": stub, "sms": stub}, rate_limits=limits)
    caplog.set_level("INFO", logger="herald.delivery")

    run_until_stopped(worker)

    assert [r.getMessage() for r in caplog.records if "rate limits" in r.getMessage()] == [
        RATE_NOTE
    ]


def test_a_dispatcher_without_rate_limits_says_nothing_of_them(
    database: Database, clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    limits = ChannelRateLimits.from_rates({"email": None}, lambda: 0.0)
    worker = dispatcher(
        database, clock, {"email": StubProvider(tmp_path / "o.jsonl")}, rate_limits=limits
    )
    caplog.set_level("INFO", logger="herald.delivery")

    run_until_stopped(worker)

    assert not [r for r in caplog.records if "rate limits" in r.getMessage()]


def test_a_database_outage_logs_one_traceback_and_is_tried_further_and_further_apart(
    clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'broken.db'}")  # its own: it is broken below
    upgrade(database)
    with database.writer.begin() as connection:
        connection.exec_driver_sql("DROP TABLE messages")  # every round fails from now on
    worker = dispatcher(database, clock, {"email": StubProvider(tmp_path / "o.jsonl")})
    caplog.set_level("INFO", logger="herald.delivery")

    async def two_seconds() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(2.0, stopping.set)
        await worker.run(stopping)

    asyncio.run(two_seconds())

    failed = [r for r in caplog.records if "dispatch round failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed][:2] == [True, False]
    assert sum(r.exc_info is not None for r in failed) == 1
    # Each repeat is one line with what the database said, not the statement that failed.
    assert failed[1].getMessage().endswith("in a row): no such table: messages")
    # 0.5 s, then 1 s, then 2 s between tries: three in two seconds, not eight.
    assert 2 <= len(failed) <= 4
    database.dispose()


def test_a_dispatcher_whose_sqlite_file_is_replaced_says_so_once(
    clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    """It went on delivering from the file it held open, without a word, while the
    messages stored in the file now at the path waited for ever."""
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")  # its own: its file is replaced below
    upgrade(database)
    store(database, clock, [funds_failure("f1")])
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(database, clock, {"email": StubProvider(outbox)})
    caplog.set_level("INFO", logger="herald.delivery")
    said = "not the SQLite file this process opened; this dispatcher delivers only"

    async def replaced_under_it() -> None:
        stopping = asyncio.Event()
        running = asyncio.create_task(worker.run(stopping))
        async with asyncio.timeout(10):
            while not outbox.exists():  # it delivers from its file
                await asyncio.sleep(0.01)
            restored = tmp_path / "restored.db"
            restored.write_bytes(b"")
            restored.replace(path)
            while said not in caplog.text:
                await asyncio.sleep(0.01)
            for n in (2, 3):  # rounds more, stored in the file it holds: said once only
                store(database, clock, [funds_failure(f"f{n}")])
                while len(outbox.read_text().splitlines()) < n:
                    await asyncio.sleep(0.01)
        stopping.set()
        await running

    asyncio.run(replaced_under_it())
    database.dispose()

    assert sum(said in r.getMessage() for r in caplog.records) == 1
    assert f"{path.resolve()} is another file" in caplog.text


def test_two_dispatchers_never_send_one_message_twice(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    store(database, clock, [funds_failure(f"d{i}") for i in range(60)])
    outbox = tmp_path / "outbox.jsonl"

    async def both() -> None:
        workers = [
            dispatcher(
                database, clock, {"email": StubProvider(outbox)}, worker_id=name, batch_size=7
            )
            for name in ("a", "b")
        ]
        for _ in range(10):
            await asyncio.gather(*(w.run_once() for w in workers))

    asyncio.run(both())
    ids = [
        line.split('"message_id":"')[1].split('"')[0] for line in outbox.read_text().splitlines()
    ]
    assert len(ids) == 60 and len(set(ids)) == 60
    with ReadOnly(database) as read:
        sent_by = dict(
            read.connection.exec_driver_sql(
                "SELECT worker, count(*) FROM delivery_attempts GROUP BY worker"
            ).all()
        )
    assert sent_by.keys() == {"a", "b"}, sent_by  # both took part: no one had it all alone


def test_two_dispatchers_of_one_host_name_and_pid_never_record_each_other_s_claims(
    database: Database,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two ``herald worker`` containers on the host's network (one host name), each Herald
    its PID 1. The first stalls mid-send past its claim's lease; the second takes the
    message over and sends it. The first's late 503 must not be recorded over the second's
    claim: recorded, it made the message a pending retry, dropped the second's ``sent``
    as no longer its own, and the message went out a third time."""
    caplog.set_level(logging.INFO, "herald.delivery")
    with monkeypatch.context() as same_host:
        same_host.setattr(bootstrap.socket, "gethostname", lambda: "node-1")
        same_host.setattr(bootstrap.os, "getpid", lambda: 1)
        names = [bootstrap.worker_id() for _ in range(2)]
    store(database, clock, [funds_failure("twin")])

    def webhook(url: str) -> dict[str, Provider]:
        return {"email": WebhookProvider("email", url, secret=None, timeout=10)}

    counted: dict[str, list[str]] = {name: [] for name in names}

    def counter(name: str) -> Callable[[str, DeliveryStatus], None]:
        return lambda _channel, status: counted[name].append(status.value)

    async def the_second_takes_over(receiver: HttpReceiver) -> None:
        first, second = (
            dispatcher(database, clock, webhook(receiver.url), worker_id=n, on_result=counter(n))
            for n in names
        )
        first_round = asyncio.create_task(first.run_once())
        async with asyncio.timeout(5):
            while not receiver.requests:  # its request is at the receiver
                await asyncio.sleep(0.01)
        clock.now += timedelta(minutes=2)  # and its process stalls past the lease
        second_round = asyncio.create_task(second.run_once())
        assert (await first_round).retried == 1  # its 503 comes first
        assert (await second_round).sent == 1

    slow_503, slower_200 = CannedResponse(503, delay=1.0), CannedResponse(200, delay=2.0)
    with HttpReceiver([slow_503, slower_200]) as receiver:
        asyncio.run(the_second_takes_over(receiver))
        clock.now += timedelta(minutes=10)  # past the backoff of a retry
        asyncio.run(dispatcher(database, clock, webhook(receiver.url)).run_once())
        assert len(receiver.requests) == 2

    assert names[0].startswith("node-1:1-") and names[0] != names[1]
    sent = message(database)
    # The first's cut-off attempt, counted by the second as it took the claim over, then its send.
    assert (sent.status, sent.attempts) == ("sent", 2)
    with ReadOnly(database) as read:
        attempts = read.outbox.attempts_for([sent.message_id])[sent.message_id]
    assert [(a.outcome, a.worker) for a in attempts] == [("retry", names[1]), ("sent", names[1])]
    assert attempts[0].detail.startswith("interrupted: its claim ran out")
    # The first's 503 was not the message's outcome: not counted, not logged as a retry;
    # the attempt it stands for is the second's, counted as it took the claim over.
    assert counted == {names[0]: [], names[1]: ["retry", "sent"]}
    assert "its claim was taken over before this attempt's outcome (retry)" in caplog.text
    assert "will be retried: HTTP 503" not in caplog.text


def test_a_slow_receiver_never_gets_a_message_again_from_a_second_dispatcher(
    database: Database, clock: FixedClock
) -> None:
    """Sends in turn, each answered after 1.2 s, under 2 s leases: the first dispatcher
    sends one, cuts the second off before its lease ends, gives the third back unsent,
    and records all that in time; the second dispatcher, looking once the leases have
    run out, finds only the third. (Without those bounds, both sent all three.)"""
    store(database, clock, [funds_failure(f"slow{i}") for i in range(3)])

    def wall_clock() -> datetime:
        return datetime.now(UTC)

    async def two_dispatchers(url: str) -> None:
        first, second = (
            Dispatcher(
                database,
                {"email": WebhookProvider("email", url, secret=None, timeout=10)},
                worker_id=name,
                clock=wall_clock,
                retry=RetryPolicy(max_attempts=3, base=60, jitter=0),
                lease_seconds=2.0,
                concurrency=1,
            )
            for name in ("first", "second")
        )
        first_round = asyncio.create_task(first.run_once())
        await asyncio.sleep(2.3)
        assert (await second.run_once()).sent == 1
        assert (await first_round).sent == 1

    with HttpReceiver(default=CannedResponse(200, delay=1.2)) as receiver:
        asyncio.run(two_dispatchers(receiver.url))
        keys = [request.headers["idempotency-key"] for request in receiver.requests]

    assert len(keys) == 3 and len(set(keys)) == 3
    with ReadOnly(database) as read:
        rows = read.connection.exec_driver_sql(
            "SELECT status, attempts FROM messages ORDER BY status, attempts"
        ).all()
    # The one cut off waits for its retry; no message is left claimed ("sending").
    assert [tuple(row) for row in rows] == [("pending", 1), ("sent", 1), ("sent", 1)]


@pytest.mark.postgres
def test_a_claim_slow_to_commit_still_ends_its_send_before_its_lease_does(
    postgres_url: str, clock: FixedClock
) -> None:
    """The first dispatcher's claim takes half of its 3 s lease to commit (another client
    holds the users table, as a migration would; a disk slow to flush does the same).
    Its send must still be cut off before the lease ends, leaving time to record it:
    timed from the end of the claim instead, it ran past the lease, the second dispatcher
    took the message over and sent it too, and the receiver got it twice."""
    with scratch_postgres_database(postgres_url) as url:
        database = Database(url)
        upgrade(database)
        store(database, clock, [opted_in_signup("slowclaim")])  # marketing: profiles are read

        async def two_dispatchers(receiver_url: str) -> DispatchReport:
            first, second = (
                Dispatcher(
                    database,
                    {"email": WebhookProvider("email", receiver_url, secret=None, timeout=10)},
                    worker_id=name,
                    clock=lambda: datetime.now(UTC),
                    retry=RetryPolicy(max_attempts=3, base=60, jitter=0),
                    lease_seconds=3.0,
                )
                for name in ("first", "second")
            )
            holder = psycopg.connect(url.replace("postgresql+psycopg:", "postgresql:", 1))
            holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            threading.Timer(1.5, holder.close).start()
            first_round = asyncio.create_task(first.run_once())
            await asyncio.sleep(3.4)  # the first's lease has run out
            await second.run_once()
            return await first_round

        with HttpReceiver(default=CannedResponse(200, delay=2.0)) as receiver:
            first = asyncio.run(two_dispatchers(receiver.url))
            keys = [request.headers["idempotency-key"] for request in receiver.requests]
        row = message(database)
        database.dispose()

    assert len(keys) == 1
    assert first.retried == 1 and (row.status, row.attempts) == ("pending", 1)


class OutageAfterSend:
    """Sends, then makes the database refuse connections for ``seconds`` (a restart of
    PostgreSQL while the round is under way), before the dispatcher records the send."""

    name = "outage"
    local = False

    def __init__(self, admin_url: str, url: str, seconds: float) -> None:
        self._outage = (admin_url, url, seconds)
        self.sent: list[str] = []
        self._threads: list[threading.Thread] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sent.append(request.message_id)
        if not self._threads:
            begun = threading.Event()
            admin_url, url, seconds = self._outage

            def outage() -> None:
                with connections_refused(admin_url, url):
                    begun.set()
                    threading.Event().wait(seconds)

            self._threads.append(threading.Thread(target=outage))
            self._threads[0].start()
            await asyncio.to_thread(begun.wait, 10)
        return DeliveryResult.sent()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


@pytest.mark.postgres
def test_a_round_sent_while_the_database_restarts_is_recorded_and_never_sent_again(
    postgres_url: str, clock: FixedClock
) -> None:
    """The database goes away for a second between a round's sends and their recording:
    the dispatcher records them once it is back, within the claims' 3 s leases, rather
    than leave them to be claimed and sent again when the leases run out."""
    with scratch_postgres_database(postgres_url) as url:
        database = Database(url)
        upgrade(database)
        store(database, clock, [funds_failure("restart")])
        provider = OutageAfterSend(postgres_url, url, seconds=1.0)
        worker = Dispatcher(
            database,
            {"email": provider},
            worker_id="w1",
            clock=lambda: datetime.now(UTC),
            lease_seconds=3.0,
        )

        async def six_seconds() -> None:
            stopping = asyncio.Event()
            asyncio.get_running_loop().call_later(6.0, stopping.set)
            await worker.run(stopping)

        asyncio.run(six_seconds())
        provider.join()
        row = message(database)
        database.dispose()

    assert len(provider.sent) == 1
    assert (row.status, row.attempts) == ("sent", 1)


def test_a_message_whose_send_kills_its_dispatcher_every_time_ends_a_dead_letter(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """A send that takes its process down (a crash in a native library, running out of
    memory) records nothing: each lease that ran out counts as an attempt, so the message
    ends a dead letter instead of being claimed, and killing a dispatcher, for ever."""
    store(database, clock, [funds_failure("poison")])

    async def dies_while_sending(name: str) -> None:
        provider = GatedProvider()  # never opened: the send is under way when it dies
        round_ = asyncio.create_task(
            dispatcher(database, clock, {"email": provider}, worker_id=name).run_once()
        )
        while not provider.started:
            await asyncio.sleep(0.01)
        round_.cancel()  # the process is gone: nothing after the send is recorded

    for name in ("w1", "w2", "w3"):  # the test policy allows three attempts
        asyncio.run(dies_while_sending(name))
        clock.now += timedelta(minutes=2)  # its lease runs out
    outbox = tmp_path / "outbox.jsonl"
    report = asyncio.run(
        dispatcher(database, clock, {"email": StubProvider(outbox)}, worker_id="w4").run_once()
    )

    assert (report.claimed, report.sent, report.failed) == (1, 0, 1)
    assert not outbox.exists()  # not sent a fourth time
    dead = message(database)
    assert (dead.status, dead.attempts) == ("failed", 3)
    assert dead.last_error.startswith("gave up after 3 attempts: interrupted: its claim ran out")
    with ReadOnly(database) as read:
        attempts = read.outbox.attempts_for([dead.message_id])[dead.message_id]
    assert [(a.attempt, a.outcome, a.worker) for a in attempts] == [
        (1, "retry", "w2"),
        (2, "retry", "w3"),
        (3, "failed", "w4"),
    ]


def test_an_expired_claim_is_delivered_by_another_dispatcher(
    database: Database, clock: FixedClock, tmp_path: Path, caplog: Any
) -> None:
    """The attempt its lease cut off is counted and logged as a retry, as the audit lists
    it: after a dispatcher was killed, its messages were sent again without a word."""
    store(database, clock, [funds_failure("c1")])
    with UnitOfWork(database) as uow:  # a dispatcher claims it, then dies
        uow.outbox.claim_due(
            now_us=to_micros(clock()), limit=10, worker="dead", lease_us=60_000_000
        )
        uow.commit()
    outbox = tmp_path / "outbox.jsonl"
    counted: list[tuple[str, str]] = []
    alive = dispatcher(
        database,
        clock,
        {"email": StubProvider(outbox)},
        worker_id="alive",
        on_result=lambda channel, status: counted.append((channel, status.value)),
    )
    assert asyncio.run(alive.run_once()).claimed == 0  # the lease still holds
    clock.now += timedelta(minutes=2)
    caplog.set_level("INFO", logger="herald.delivery")
    report = asyncio.run(alive.run_once())
    assert report.sent == 1

    assert counted == [("email", "retry"), ("email", "sent")]
    row = message(database)
    assert f"message {row.message_id} will be retried: interrupted: its claim ran out" in (
        caplog.text
    )


def test_quiet_hours_hold_an_sms_until_the_morning_in_the_users_zone(
    database: Database, tmp_path: Path
) -> None:
    from herald.delivery.quiet_hours import hold_policy
    from herald.delivery.setup import build_delivery

    plan = build_delivery(
        {"delivery": {"quiet_hours": {"sms": {"start": "21:00", "end": "08:00"}}}},
        outbox=tmp_path / "o",
    )
    night = FixedClock(
        parse_timestamp("2025-11-03T23:30:00Z")
    )  # 23:30 in Lisbon (UTC+0 in November)
    events = link_after_signup("q1")
    events = [
        Event(
            e.event_id,
            e.user_id,
            e.event_type,
            e.timestamp,
            e.properties,
            {**e.user_traits, "timezone": "Europe/Lisbon"},
        )
        for e in events
    ]
    with UnitOfWork(database) as uow:
        ingest(uow, events, RULES, now=night(), hold=hold_policy(plan.quiet_hours))
        uow.commit()
    sms = message(database)
    assert sms.channel == "sms" and "held until 2025-11-04T08:00:00Z" in sms.hold_reason
    stub = StubProvider(tmp_path / "outbox.jsonl")
    worker = dispatcher(database, night, {"sms": stub, "email": stub})
    assert asyncio.run(worker.run_once()).claimed == 0
    night.now = parse_timestamp("2025-11-04T08:00:00Z")
    assert asyncio.run(worker.run_once()).sent == 1


def high_risk_alert(user: str) -> Event:
    """A fourth declined payment: an internal alert, and no message to the user."""
    failure = funds_failure(user)
    return Event(
        failure.event_id,
        user,
        "payment_failed",
        failure.timestamp,
        {"amount": 1.0, "attempt_number": 4, "failure_reason": "CARD_DECLINED"},
        failure.user_traits,
    )


def test_internal_alerts_are_logged_and_never_sent_to_the_user(
    database: Database, clock: FixedClock, caplog: Any
) -> None:
    alert = high_risk_alert("h1")
    store(database, clock, [alert])
    caplog.set_level("WARNING", logger="herald.delivery")
    asyncio.run(dispatcher(database, clock, {"internal": LogAlertProvider()}).run_once())
    [record] = [r for r in caplog.records if getattr(r, "alert", None) == "HIGH_RISK_ALERT"]
    assert (
        record.levelname == "WARNING"
        and record.user_id == "h1"
        and record.event_id == alert.event_id
    )
    assert message(database).recipient == "internal"


def test_a_webhook_added_to_internal_alerts_keeps_the_log_line_of_record(
    database: Database, clock: FixedClock, caplog: Any, tmp_path: Path
) -> None:
    # `internal: {webhook: ...}` without `type: log` wrote the alerts to the stub's file,
    # where nobody looks for them, instead of the log.
    store(database, clock, [high_risk_alert("h2")])
    outbox = tmp_path / "outbox.jsonl"
    caplog.set_level("WARNING", logger="herald.delivery")
    with HttpReceiver() as receiver:
        plan = build_delivery(
            {"providers": {"internal": {"webhook": {"url": receiver.url}}}}, outbox=outbox, env={}
        )
        report = asyncio.run(dispatcher(database, clock, plan.providers).run_once())
        [request] = receiver.requests

    assert report.sent == 1 and request.json()["rule"] == "HIGH_RISK_ALERT"
    assert [r for r in caplog.records if getattr(r, "alert", None) == "HIGH_RISK_ALERT"]
    assert not outbox.exists()


def test_an_alert_whose_webhook_is_refused_says_it_is_not_retried(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """The alert is logged, so sent; its refused post is noted. The note read
    "internal:webhook: retry HTTP 500", as if the post would be made again."""
    store(database, clock, [high_risk_alert("h4")])
    with HttpReceiver(default=CannedResponse(500)) as receiver:
        plan = build_delivery(
            {"providers": {"internal": {"webhook": {"url": receiver.url}}}},
            outbox=tmp_path / "outbox.jsonl",
            env={},
        )
        assert asyncio.run(dispatcher(database, clock, plan.providers).run_once()).sent == 1
        assert len(receiver.requests) == 1

    with ReadOnly(database) as read:
        row = message(database)
        [attempt] = read.outbox.attempts_for([row.message_id])[row.message_id]
    assert attempt.detail == "logged; internal:webhook: not sent, not retried: HTTP 500: {}"


def test_an_alert_whose_webhook_is_cut_off_says_its_second_log_line_is_a_repeat(
    database: Database, clock: FixedClock, caplog: Any, tmp_path: Path
) -> None:
    """The chat webhook answers after 2 s, the claim leaves 0.9 s: the alert is logged, its
    post cut off and made again later with the same Idempotency-Key. The log line of the
    second attempt must not read as a second alert."""
    store(database, clock, [high_risk_alert("h3")])
    caplog.set_level("WARNING", logger="herald.delivery")
    with HttpReceiver([CannedResponse(200, delay=2.0)]) as receiver:
        plan = build_delivery(
            {"providers": {"internal": {"webhook": {"url": receiver.url}}}},
            outbox=tmp_path / "outbox.jsonl",
            env={},
        )
        worker = dispatcher(database, clock, plan.providers, lease_seconds=1.0)

        async def two_rounds() -> tuple[int, int]:
            retried = (await worker.run_once()).retried
            clock.now += timedelta(minutes=10)
            sent = (await worker.run_once()).sent
            await plan.providers["internal"].aclose()
            return retried, sent

        assert asyncio.run(two_rounds()) == (1, 1)
        keys = [request.headers["idempotency-key"] for request in receiver.requests]

    assert len(keys) == 2 and len(set(keys)) == 1  # at least once, with its key
    lines = [r for r in caplog.records if getattr(r, "alert", None) == "HIGH_RISK_ALERT"]
    first, second = (r.getMessage() for r in lines)
    assert first.startswith("internal alert HIGH_RISK_ALERT for user h3 (event pf-h3-3): ")
    assert second.startswith(
        "internal alert HIGH_RISK_ALERT for user h3 (event pf-h3-3), again (attempt 2): "
    )
    assert [r.attempt for r in lines] == [1, 2]


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


def test_an_email_cut_off_at_its_claims_deadline_is_not_sent_after_it(
    database: Database, clock: FixedClock
) -> None:
    """The SMTP server answers RCPT TO after 1.5 s; the claim leaves 0.9 s for sending. The
    send is cut off before the message's content was sent, so nothing may go out after
    that: the retry must be the only copy the server accepts."""
    store(database, clock, [funds_failure("cut1")])
    with SmtpSink() as sink:
        sink.rcpt_delay = 1.5
        smtp = SmtpProvider("email", sink.host, sink.port, sender="herald@example.com")
        worker = dispatcher(database, clock, {"email": smtp}, lease_seconds=1.0)
        assert asyncio.run(worker.run_once()).retried == 1
        assert "no answer within its claim's lease" in message(database).last_error
        assert sink.messages == []  # cut off: the message must not have gone out after all

        sink.rcpt_delay = 0.0
        clock.now += timedelta(minutes=10)
        assert asyncio.run(worker.run_once()).sent == 1
        assert len(sink.messages) == 1


def test_a_slow_smtp_relay_gets_as_many_sends_at_once_as_the_dispatcher_makes(
    database: Database, clock: FixedClock
) -> None:
    """A relay that takes a second per message, sixteen messages, a claim that leaves 2.7
    s to send: the dispatcher's sixteen sends at once must each have a connection of its
    own. Queued for a few shared threads instead (six on a host of two cores), the last
    ones were cut off by the claim's end without having been tried, and each lost one of
    its attempts all the same."""
    store(database, clock, [funds_failure(f"slow{n}") for n in range(16)])
    with SmtpSink() as sink:
        sink.rcpt_delay = 1.0
        smtp = SmtpProvider("email", sink.host, sink.port, sender="herald@example.com")
        worker = dispatcher(database, clock, {"email": smtp}, lease_seconds=3.0)
        report = asyncio.run(worker.run_once())
        asyncio.run(smtp.aclose())
        assert (report.sent, report.retried) == (16, 0)
        assert len(sink.messages) == 16


def test_an_answer_holding_a_nul_character_is_recorded_like_any_other(
    database: Database, clock: FixedClock
) -> None:
    """A receiver's error page with a NUL byte in it (binary garbage, a compressed body
    sent unlabelled), and a JSON id holding one: PostgreSQL's text refuses NUL, and an
    unrecorded round would be sent again, whole, once its claims ran out."""
    store(database, clock, [funds_failure("nul1"), funds_failure("nul2", day=4)])
    with HttpReceiver(
        [CannedResponse(500, b"\x1f\x8b\x00\x00bad"), CannedResponse(200, b'{"id": "r\\u00001"}')]
    ) as receiver:
        provider = WebhookProvider("email", receiver.url, secret=None)
        worker = dispatcher(database, clock, {"email": provider}, concurrency=1)
        report = asyncio.run(worker.run_once())
        assert (report.sent, report.retried) == (1, 1)
        with ReadOnly(database) as read:
            rows = read.connection.exec_driver_sql(
                "SELECT status, last_error FROM messages ORDER BY status"
            ).all()
            details = read.connection.exec_driver_sql(
                "SELECT detail FROM delivery_attempts ORDER BY detail"
            ).all()
        assert [tuple(row) for row in rows] == [
            ("pending", "HTTP 500: \ufffd\ufffd\ufffdbad"),
            ("sent", None),
        ]
        assert [detail for (detail,) in details] == [
            "HTTP 200 (reference r\ufffd1)",
            "HTTP 500: \ufffd\ufffd\ufffdbad",
        ]
        clock.now += timedelta(minutes=10)
        assert asyncio.run(worker.run_once()).sent == 1
        assert len(receiver.requests) == 3  # neither sent twice


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


def test_a_receiver_s_retry_after_is_waited_out(database: Database, clock: FixedClock) -> None:
    """Throttled with Retry-After (in seconds, then as an HTTP date): the next attempt
    comes no sooner than the receiver asked, though the backoff alone is 10 s."""
    store(database, clock, [funds_failure("ra1")])
    later = format_datetime(clock.now + timedelta(seconds=240), usegmt=True)
    with HttpReceiver() as receiver:
        receiver.respond_with(
            CannedResponse(429, b"", {"Retry-After": "120"}),
            CannedResponse(503, b"", {"Retry-After": later}),
            CannedResponse(200),
        )
        provider = WebhookProvider(
            "email", receiver.url, secret=None, clock=lambda: clock.now.timestamp()
        )
        worker = dispatcher(database, clock, {"email": provider})
        assert asyncio.run(worker.run_once()).retried == 1
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).claimed == 0  # asked for 120 s
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).retried == 1
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).claimed == 0  # asked for the date, 120 s on
        clock.now += timedelta(seconds=60)
        assert asyncio.run(worker.run_once()).sent == 1
        assert len(receiver.requests) == 3


class ThrottlingReceiver(HttpReceiver):
    """A receiver that answers 429 with ``Retry-After: 2`` to every request in the two
    seconds (of ``clock``) from its first one, and 200 afterwards."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__()
        self._clock = clock
        self._throttled_until: datetime | None = None
        self.statuses: list[tuple[str, int]] = []  # (idempotency key, status) as answered

    def _record(self, request: Any) -> CannedResponse:
        super()._record(request)
        with self._lock:
            now = self._clock()
            if self._throttled_until is None:
                self._throttled_until = now + timedelta(seconds=2)
            if now < self._throttled_until:
                response = CannedResponse(429, b"slow down", {"Retry-After": "2"})
            else:
                response = self.default
            self.statuses.append((request.headers["idempotency-key"], response.status))
            return response


def test_a_receiver_s_429_pauses_the_whole_channel_without_using_attempts(
    database: Database, clock: FixedClock
) -> None:
    """Every message sent while the receiver throttles would be refused as well, each
    using an attempt: the first 429's Retry-After holds the whole channel back."""
    store(database, clock, [funds_failure(f"tm{i}") for i in range(4)])
    with ThrottlingReceiver(clock) as receiver:
        provider = WebhookProvider(
            "email", receiver.url, secret=None, clock=lambda: clock.now.timestamp()
        )
        # One send at a time, as when a round holds more messages than its concurrency:
        # the first answer comes back before the next message's turn.
        worker = dispatcher(database, clock, {"email": provider}, concurrency=1)

        async def rounds() -> list[DispatchReport]:
            first = await worker.run_once()
            clock.now += timedelta(seconds=1)
            store(database, clock, [funds_failure("tm-later")])  # due during the pause
            during = await worker.run_once()
            clock.now += timedelta(seconds=1)
            after = await worker.run_once()
            clock.now += timedelta(minutes=10)  # the throttled one's own backoff
            return [first, during, after, await worker.run_once()]

        first, during, after, last = asyncio.run(rounds())

    assert (first.retried, first.deferred, first.sent) == (1, 3, 0)
    assert (during.deferred, during.sent) == (1, 0)
    assert (after.sent, last.sent) == (4, 1)
    assert [status for _, status in receiver.statuses].count(429) == 1
    delivered = [key for key, status in receiver.statuses if status == 200]
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == 5
    with ReadOnly(database) as read:
        ids = [r[0] for r in read.connection.exec_driver_sql("SELECT message_id FROM messages")]
        attempts = read.outbox.attempts_for(ids)
    [throttled] = [key for key, status in receiver.statuses if status == 429]
    assert [a.outcome for a in attempts[throttled]] == ["retry", "sent"]
    assert "HTTP 429" in attempts[throttled][0].detail
    for other in set(ids) - {throttled}:
        assert [(a.outcome, a.detail) for a in attempts[other]] == [("sent", "HTTP 200")]


def test_a_retry_due_in_quiet_hours_waits_for_the_morning(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    """An SMS first tried at 20:59:50 in Lisbon, answered 503: its retry falls due at
    21:00, inside the user's quiet hours (21:00-08:00), and must wait until 08:00 like a
    message created then (the same check, at send time, holds a dead letter re-queued at
    night, or a backlog that reaches past 21:00)."""
    from herald.bootstrap import build_runtime
    from herald.config import Settings
    from herald.delivery.quiet_hours import hold_policy

    evening = FixedClock(parse_timestamp("2025-11-03T20:59:50Z"))  # Lisbon is UTC+0 then
    with HttpReceiver() as receiver:
        receiver.respond_with(CannedResponse(503))
        rules = tmp_path / "rules.yaml"
        packaged = default_rules_path().read_text(encoding="utf-8")
        rules.write_text(
            packaged
            + f"templates_dir: {default_rules_path().parent / 'templates'}\n"
            + "providers:\n"
            + f"  sms: {{type: webhook, url: '{receiver.url}'}}\n"
            + "delivery:\n"
            + "  backoff_seconds: 10\n"
            + "  quiet_hours: {sms: {start: '21:00', end: '08:00'}}\n",
            encoding="utf-8",
        )
        runtime = build_runtime(
            Settings(database_url=database_url, rules=str(rules), outbox_file="/dev/null"),
            clock=evening,
        )
        assert runtime.dispatcher is not None
        close_after_test(runtime.delivery.providers.values())
        events = [
            Event(e.event_id, e.user_id, e.event_type, e.timestamp, e.properties,
                  {**e.user_traits, "timezone": "Europe/Lisbon"})
            for e in link_after_signup("q2")
        ]  # fmt: skip
        with UnitOfWork(database) as uow:
            ingest(
                uow, events, RULES, now=evening(), hold=hold_policy(runtime.delivery.quiet_hours)
            )
            uow.commit()
        assert asyncio.run(runtime.dispatcher.run_once()).retried == 1  # at 20:59:50

        evening.now = parse_timestamp("2025-11-03T21:05:00Z")
        asyncio.run(runtime.dispatcher.run_once())
        assert len(receiver.requests) == 1  # nothing sent to the user at 21:05
        evening.now = parse_timestamp("2025-11-04T08:00:00Z")
        assert asyncio.run(runtime.dispatcher.run_once()).sent == 1
        runtime.database.dispose()


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


def test_a_runtime_that_only_delivers_stops_whole_and_never_starts_the_writer(
    tmp_path: Path,
) -> None:
    from herald.bootstrap import build_runtime
    from herald.config import Settings

    runtime = build_runtime(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'herald.db'}",
            outbox_file=str(tmp_path / "outbox.jsonl"),
            dispatcher=True,
        )
    )

    before = herald_threads()

    async def try_to_ingest_while_delivering() -> None:
        stopping = asyncio.Event()
        delivering = asyncio.create_task(runtime.deliver(stopping))
        async with asyncio.timeout(5):
            while herald_threads() == before:  # the checkpointer's: delivery has begun
                await asyncio.sleep(0.01)
        with pytest.raises(IngestFailed):  # while delivering: the writer takes nothing
            await runtime.writer.ingest([])
        stopping.set()
        await delivering
        with pytest.raises(IngestFailed, match="stopping"):
            await runtime.writer.ingest([])

    asyncio.run(try_to_ingest_while_delivering())
    assert herald_threads() == before  # the checkpointer's is gone again


def herald_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("herald-")}
