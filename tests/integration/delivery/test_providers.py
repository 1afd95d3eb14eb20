"""Each channel's provider end to end: email through a real SMTP server, SMS to a signed
webhook, the stub's outbox file, internal alerts in the log and to a webhook, and
answers recorded whatever they hold."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.providers.signing import SIGNATURE_HEADER, verify
from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.providers.stub import LogAlertProvider, StubProvider
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.setup import build_delivery
from herald.domain.model import Event
from herald.observability.logging import configure_logging
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, link_after_signup, message, store
from tests.support.http_receiver import CannedResponse, HttpReceiver
from tests.support.smtp_sink import SmtpSink


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


def test_each_outbox_line_survives_a_split_on_unicode_line_boundaries(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    """JSON allows U+2028, U+2029 and U+0085 raw, but str.splitlines (and many editors
    and JavaScript tools) end a line at each: a name holding one cut its line in two."""
    names = {"u1": "Ana\u2028Maria", "u2": "Jo\u2029\u00e3o\u0085Silva"}
    store(database, clock, [funds_failure(user, first_name=name) for user, name in names.items()])
    outbox = tmp_path / "outbox.jsonl"

    worker = dispatcher(database, clock, {"email": StubProvider(outbox)})

    assert asyncio.run(worker.run_once()).sent == 2

    lines = outbox.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    bodies = {entry["user_id"]: entry["body"] for entry in map(json.loads, lines)}
    assert all(bodies[user].startswith(f"Hi {name},") for user, name in names.items())


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


def test_an_internal_alert_is_logged_whatever_the_log_level(
    database: Database, clock: FixedClock, capsys: Any
) -> None:
    # Logging the alert is its delivery, recorded as sent: at HERALD_LOG_LEVEL=ERROR the
    # WARNING line was dropped, and an alert the audit showed as sent was nowhere.
    alert = high_risk_alert("h3")
    store(database, clock, [alert])
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    try:
        configure_logging("ERROR", "json")
        report = asyncio.run(
            dispatcher(database, clock, {"internal": LogAlertProvider()}).run_once()
        )
    finally:
        root.handlers[:], root.level = handlers, root_level

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [line] = [line for line in lines if line.get("alert") == "HIGH_RISK_ALERT"]
    assert report.sent == 1
    assert line["level"] == "WARNING" and line["user_id"] == "h3"
    assert line["event_id"] == alert.event_id


def test_an_internal_alert_line_names_its_rule_as_retry_and_dead_letter_lines_do(
    database: Database, clock: FixedClock, capsys: Any
) -> None:
    # The alert named its rule in `alert` alone, while the retry and dead-letter lines use
    # `rule`: a log query on rule="HIGH_RISK_ALERT" found every line but the alert itself.
    store(database, clock, [high_risk_alert("h4")])
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        asyncio.run(dispatcher(database, clock, {"internal": LogAlertProvider()}).run_once())
    finally:
        root.handlers[:], root.level = handlers, root_level

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [line] = [line for line in lines if line.get("rule") == "HIGH_RISK_ALERT"]
    assert line["alert"] == "HIGH_RISK_ALERT" and line["user_id"] == "h4"


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


def test_an_alert_whose_webhook_is_refused_says_so_in_the_log(
    database: Database, clock: FixedClock, caplog: Any, tmp_path: Path
) -> None:
    """A chat hook whose token was revoked answers 404 to every alert: the team no longer
    sees them there, and the log must say so, not the audit alone."""
    store(database, clock, [high_risk_alert("h5")])
    caplog.set_level("WARNING", logger="herald.delivery")
    with HttpReceiver(default=CannedResponse(404, b"no such hook")) as receiver:
        plan = build_delivery(
            {"providers": {"internal": {"webhook": {"url": receiver.url}}}},
            outbox=tmp_path / "outbox.jsonl",
            env={},
        )
        assert asyncio.run(dispatcher(database, clock, plan.providers).run_once()).sent == 1

    said = [r.getMessage() for r in caplog.records if "not retried" in r.getMessage()]
    assert said == [
        "internal alert HIGH_RISK_ALERT for user h5 (event pf-h5-3): internal:webhook not "
        "sent, and not retried (the log line is the alert of record): HTTP 404: no such hook"
    ]


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
