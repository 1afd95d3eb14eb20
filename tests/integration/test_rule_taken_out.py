"""A rule taken out of the rule file leaves the messages it decided waiting: written when
decided, they are sent all the same. The dispatcher says so as it starts, and `herald
messages cancel --rule` cancels them, saying why in the audit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from herald.api.app import create_app
from herald.cli.main import app as cli
from herald.config import Settings
from herald.domain.model import Event, message_id_for
from herald.domain.timeutil import to_micros
from herald.rules.loader import load_ruleset
from herald.service.ingest import ingest
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.outbox import CANCELLED, FAILED, PENDING, SENDING, AttemptRecord
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.support.events import opted_in_signup
from tests.support.processes import HeraldProcess

DECIDED = datetime(2025, 11, 3, 12, tzinfo=UTC)
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


def test_cancelling_a_rule_s_messages_leaves_what_is_being_sent_and_says_why_in_the_audit(
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
        "1 message(s) of WELCOME_EMAIL being sent now are beyond recall; one the receiver "
        "refuses comes back for a retry, which the same command cancels once its send is "
        "recorded (within a minute)",
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


def test_a_message_being_sent_when_its_rule_was_cancelled_is_cancelled_by_a_second_run_if_refused(
    database: Database, database_url: str
) -> None:
    """What the first run says of the message being sent holds: refused by its receiver,
    it comes back for a retry, and the same command cancels it then."""
    decide(database, ["sending"])
    fail_one_and_claim_another(database, failed="none", claimed=welcome_of("sending"))
    command = ["messages", "cancel", "--rule", "WELCOME_EMAIL", "--database", database_url]
    first = CliRunner().invoke(cli, command, env={"COLUMNS": "1000"})
    refused = AttemptRecord(
        welcome_of("sending"), attempt=1, at_us=to_micros(DECIDED), outcome="retry", detail="503"
    )
    with UnitOfWork(database) as uow:
        uow.outbox.record_attempts([refused], worker="test")
        uow.commit()

    second = CliRunner().invoke(cli, command, env={"COLUMNS": "1000"})

    assert "comes back for a retry, which the same command cancels" in first.output
    assert second.output.splitlines() == ["cancelled 1 message(s) of WELCOME_EMAIL"]
    with ReadOnly(database) as read:
        assert read.outbox.get(welcome_of("sending")).status == CANCELLED
