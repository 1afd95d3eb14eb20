"""A rule taken out of the rule file leaves the messages it decided waiting: written when
decided, they are sent all the same. The dispatcher says so as it starts, and `herald
messages cancel --rule` cancels them, saying why in the audit; one being sent then ends
cancelled, unless it is sent."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from herald.api.app import create_app
from herald.api.schemas.responses import AuditOut
from herald.cli.main import app as cli
from herald.config import Settings
from herald.delivery.provider import DeliveryResult, SendRequest
from herald.domain.model import Event, message_id_for
from herald.domain.timeutil import to_micros
from herald.rules.loader import load_ruleset
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.outbox import CANCELLED, FAILED, PENDING, SENDING, SENT, AttemptRecord
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, message, run_rounds, store
from tests.support.events import opted_in_signup
from tests.support.json_schema import schema_problems
from tests.support.processes import HeraldProcess

DECIDED = datetime(2025, 11, 3, 12, tzinfo=UTC)
ISO_SECOND = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"  # as a reason gives a time
# The default file without its welcome email: a rule of its own, and nothing that reads
# a template.
WITHOUT_THE_WELCOME = """\
events:
  signup_completed: {}
rules:
  - id: SIGNUP_ALERT
    trigger: signup_completed
    channel: internal
"""


def decide(database: Database, users: list[str]) -> None:
    """Decide, with the default rules, a welcome email for each of ``users`` and an
    insufficient-funds email (another rule's) for ``other``."""
    shortfall = Event(
        "pay-other",
        "other",
        "payment_failed",
        DECIDED,
        {"amount": 10.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"email": "other@example.com"},
    )
    with UnitOfWork(database) as uow:
        signups = [opted_in_signup(user) for user in users]
        ingest(uow, [*signups, shortfall], load_ruleset(), now=DECIDED)
        uow.commit()


def welcome_of(user: str) -> str:
    return message_id_for(f"WELCOME_EMAIL:{user}")


def fail_one_and_claim_another(database: Database, *, failed: str, claimed: str) -> None:
    """Make ``failed`` a dead letter, leave ``claimed`` being sent, and the rest waiting."""
    now_us = to_micros(DECIDED)
    with UnitOfWork(database) as uow:
        rows = uow.outbox.claim_due(now_us=now_us, limit=100, worker="test", lease_us=10**12)
        dead = AttemptRecord(failed, attempt=1, at_us=now_us, outcome=FAILED, detail="refused")
        uow.outbox.record_attempts([dead], worker="test")
        for row in rows:
            if row.message_id not in (failed, claimed):
                uow.outbox.release(row.message_id, worker="test", due_us=now_us, reason="")
        uow.commit()


@pytest.mark.parametrize(
    "command",
    [["worker"], ["serve", "--dispatcher-inline", "--port", "0"]],
    ids=["worker", "serve-inline"],
)
def test_a_process_that_delivers_names_the_waiting_messages_of_rules_its_file_lacks(
    tmp_path: Path, command: list[str]
) -> None:
    # serve delivering on its own event loop said nothing of them: only a worker (or
    # serve's dispatcher process, which is one) did.
    url = f"sqlite:///{tmp_path / 'herald.db'}"
    database = Database(url)
    upgrade(database)
    decide(database, ["u1", "u2"])
    database.dispose()
    rules = tmp_path / "rules.yaml"
    rules.write_text(WITHOUT_THE_WELCOME, encoding="utf-8")

    with HeraldProcess(command[0], log_dir=tmp_path) as worker:
        worker.start([*command, "--database", url, "--rules", str(rules)], cwd=tmp_path)
        worker.wait_for_output("delivering ")
        worker.wait_for_output("cancels them")

    said = " ".join(worker.output().split())
    assert (
        f"warning: messages waiting to be sent belong to rules the rule file {rules} does not have "
        "(INSUFFICIENT_FUNDS_EMAIL: 1, WELCOME_EMAIL: 2): they are sent as written when "
        "decided; `herald messages cancel --rule RULE` cancels them"
    ) in said


def test_cancelling_a_rule_s_messages_marks_what_is_being_sent_and_says_why_in_the_audit(
    database: Database, database_url: str
) -> None:
    decide(database, ["waiting", "dead", "sending"])
    fail_one_and_claim_another(database, failed=welcome_of("dead"), claimed=welcome_of("sending"))

    result = CliRunner().invoke(
        cli,
        ["messages", "cancel", "--rule", "WELCOME_EMAIL", "--database", database_url],
        env={"COLUMNS": "1000"},
    )

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "cancelled 2 message(s) of WELCOME_EMAIL",
        "1 message(s) of WELCOME_EMAIL being sent now will be cancelled when their attempt "
        "ends, unless they are sent: a send that succeeds is beyond recall",
    ]
    with ReadOnly(database) as read:
        status = {
            user: read.outbox.get(welcome_of(user)).status
            for user in ("waiting", "dead", "sending")
        }
        other = read.outbox.get(message_id_for("INSUFFICIENT_FUNDS_EMAIL:other:2025-11-03"))
    assert status == {"waiting": CANCELLED, "dead": CANCELLED, "sending": SENDING}
    assert other.status == PENDING  # another rule's message is left alone
    settings = Settings(database_url=database_url, dispatcher=False)
    with TestClient(create_app(settings)) as client:
        audit = client.get("/audit/waiting").json()
    (message,) = audit["messages"]
    assert message["status"] == CANCELLED
    assert "herald messages cancel --rule WELCOME_EMAIL" in str(message)


def test_the_audit_shows_a_message_being_sent_when_its_rule_was_cancelled_as_marked(
    database: Database, database_url: str
) -> None:
    """Its status stays `sending` until its attempt ends: the audit showed it as any other
    send, though it will not be tried again."""
    decide(database, ["sending"])  # and another rule's message for "other"
    with UnitOfWork(database) as uow:  # both being sent
        now_us = to_micros(DECIDED)
        uow.outbox.claim_due(now_us=now_us, limit=100, worker="test", lease_us=10**12)
        uow.commit()
    command = ["messages", "cancel", "--rule", "WELCOME_EMAIL", "--database", database_url]
    assert CliRunner().invoke(cli, command).exit_code == 0

    settings = Settings(database_url=database_url, dispatcher=False)
    with TestClient(create_app(settings)) as client:
        audits = {user: client.get(f"/audit/{user}").json() for user in ("sending", "other")}
        document = client.get("/openapi.json").json()

    [marked] = audits["sending"]["messages"]
    assert marked["status"] == SENDING
    assert re.fullmatch(
        re.escape("cancelled by `herald messages cancel --rule WELCOME_EMAIL` at ") + ISO_SECOND,
        marked["cancel_requested"],
    ), marked["cancel_requested"]
    [unmarked] = audits["other"]["messages"]  # another rule's, claimed too
    assert (unmarked["status"], unmarked["cancel_requested"]) == (SENDING, None)
    for audit in audits.values():
        assert schema_problems(document, {"$ref": "#/components/schemas/AuditOut"}, audit) == []
        AuditOut.model_validate(audit, strict=True)
    assert "cancel_requested" in document["components"]["schemas"]["MessageOut"]["required"]


class CancelledMidSend:
    """A receiver that answers ``answer`` to each send, once the operator has cancelled
    the rule of the message while it was being sent (the command's output kept)."""

    name = "cancelled-mid-send"
    local = False

    def __init__(self, database_url: str, answer: DeliveryResult) -> None:
        self._database_url = database_url
        self._answer = answer
        self.sends: list[str] = []
        self.said: list[str] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sends.append(request.message_id)
        command = ["messages", "cancel", "--rule", "INSUFFICIENT_FUNDS_EMAIL"]
        result = CliRunner().invoke(
            cli, [*command, "--database", self._database_url], env={"COLUMNS": "1000"}
        )
        assert result.exit_code == 0, result.output
        self.said.append(result.output)
        return self._answer

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(
    ("answer", "ends"),
    [
        (DeliveryResult.retry("HTTP 503"), CANCELLED),
        (DeliveryResult.failed("HTTP 400"), CANCELLED),
        (DeliveryResult.sent("accepted"), SENT),
    ],
    ids=["refused-for-a-retry", "refused-for-good", "sent"],
)
def test_a_message_being_sent_when_its_rule_is_cancelled_ends_cancelled_unless_sent(
    database: Database,
    database_url: str,
    clock: FixedClock,
    answer: DeliveryResult,
    ends: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store(database, clock, [funds_failure("u1")])
    receiver = CancelledMidSend(database_url, answer)
    worker = dispatcher(database, clock, {"email": receiver})

    with caplog.at_level(logging.INFO, logger="herald.delivery.dispatcher"):
        run_rounds(worker, clock, rounds=5)  # past every backoff: a retry would be sent

    assert len(receiver.sends) == 1  # never sent again
    assert receiver.said[0].splitlines() == [
        "cancelled 0 message(s) of INSUFFICIENT_FUNDS_EMAIL",
        "1 message(s) of INSUFFICIENT_FUNDS_EMAIL being sent now will be cancelled when "
        "their attempt ends, unless they are sent: a send that succeeds is beyond recall",
    ]
    row = message(database)
    assert row.status == ends
    said = [record.getMessage() for record in caplog.records]
    if ends == CANCELLED:
        reason = row.last_error
        assert re.fullmatch(
            re.escape("cancelled by `herald messages cancel --rule INSUFFICIENT_FUNDS_EMAIL` at ")
            + ISO_SECOND,
            reason,
        ), reason
        # The dispatcher's line says what became of it, not that it will be retried.
        assert f"message {row.message_id} cancelled, not sent: {reason} (its attempt: " in (
            "\n".join(said)
        )
        assert not [line for line in said if "will be retried" in line or "dead-letter" in line]
        assert "round of 1 message(s): 0 sent, 0 to retry, 0 failed, 0 deferred, 1 cancelled" in (
            said
        )


def test_cancelling_a_rule_id_with_no_messages_names_the_rules_that_have_some(
    database: Database, database_url: str
) -> None:
    """A rule id typed wrong (in another case, say) cancels nothing: said as "cancelled 0"
    alone, with exit code 0, it would read as if the rule had nothing waiting. A rule whose
    messages have all gone is not a mistake: asked again, the cancel succeeds."""
    decide(database, ["waiting"])
    command = ["messages", "cancel", "--database", database_url, "--rule"]

    mistyped = CliRunner().invoke(cli, [*command, "welcome_email"], env={"COLUMNS": "1000"})
    CliRunner().invoke(cli, [*command, "WELCOME_EMAIL"], env={"COLUMNS": "1000"})
    CliRunner().invoke(cli, [*command, "INSUFFICIENT_FUNDS_EMAIL"], env={"COLUMNS": "1000"})
    nothing_left = CliRunner().invoke(cli, [*command, "WELCOME_EMAIL"], env={"COLUMNS": "1000"})

    assert mistyped.exit_code == 1, mistyped.output
    assert mistyped.output.splitlines() == [
        "cancelled 0 message(s) of welcome_email",
        "no message of welcome_email was ever stored (rule ids are case-sensitive); rules "
        "that have some: INSUFFICIENT_FUNDS_EMAIL (1), WELCOME_EMAIL (1)",
    ]
    assert nothing_left.exit_code == 0, nothing_left.output
    assert nothing_left.output.splitlines() == [
        "cancelled 0 message(s) of WELCOME_EMAIL",
        "no message of WELCOME_EMAIL was waiting to be sent or a dead letter; no rule has any",
    ]
    with ReadOnly(database) as read:
        assert read.outbox.get(welcome_of("waiting")).status == CANCELLED
