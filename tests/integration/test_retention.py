"""Retention on a real database, SQLite and PostgreSQL: old events and finished messages
go in small transactions, pending messages stay, and the audit says what was pruned."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select
from typer.testing import CliRunner

from herald.api.app import create_app
from herald.cli.main import app as cli
from herald.config import Settings
from herald.domain.model import Event
from herald.domain.timeutil import to_micros
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset
from herald.service.audit import user_audit
from herald.service.ingest import ingest
from herald.service.retention import PruneTotals, prune_history
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.outbox import FAILED, SENT, AttemptRecord
from herald.store.tables import delivery_attempts, events, messages, users
from herald.store.unit_of_work import UnitOfWork
from tests.support.processes import herald_command, herald_environment

OLD = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
CUTOFF = datetime(2024, 6, 1, tzinfo=UTC)
RECENT = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
FAR_FUTURE = RECENT + timedelta(days=3650)


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset()


def payment_initiated(user: str, at: datetime, n: int) -> Event:
    """An event no rule reacts to: it leaves no message behind."""
    return Event(
        event_id=f"evt_{user}_pay_{n}",
        user_id=user,
        event_type="payment_initiated",
        timestamp=at,
        properties={"amount": 10.0 + n},
    )


def signup(user: str, at: datetime) -> Event:
    """An event that creates one welcome email for ``user``."""
    return Event(
        event_id=f"evt_{user}_signup",
        user_id=user,
        event_type="signup_completed",
        timestamp=at,
        user_traits={"email": f"{user}@example.com", "marketing_opt_in": True},
    )


def store(database: Database, ruleset: RuleSet, batch: list[Event], *, now: datetime) -> None:
    """Ingest and commit, with ``now`` as the moment the messages were created."""
    with UnitOfWork(database) as uow:
        ingest(uow, batch, ruleset, now=now)
        uow.commit()


def deliver(database: Database, *, at: datetime, outcome_by_user: dict[str, str]) -> None:
    """Claim every due message and record one attempt with the user's outcome
    (``sent``, ``failed`` or ``retry``; a retry is due again only in the far future)."""
    at_us = to_micros(at)
    with UnitOfWork(database) as uow:
        claimed = uow.outbox.claim_due(now_us=at_us, limit=100, worker="test", lease_us=60_000_000)
        assert {row.user_id for row in claimed} == set(outcome_by_user)
        for row in claimed:
            outcome = outcome_by_user[row.user_id]
            attempt = AttemptRecord(
                row.message_id,
                attempt=1,
                at_us=at_us,
                outcome=outcome,
                detail=f"test: {outcome}",
                next_due_us=to_micros(FAR_FUTURE),
            )
            assert uow.outbox.record_attempts([attempt], worker="test") == {attempt.message_id}
        uow.commit()


def event_ids(database: Database) -> set[str]:
    with database.reader.connect() as connection:
        return set(connection.execute(select(events.c.event_id)).scalars())


def message_status_by_user(database: Database) -> dict[str, str]:
    with database.reader.connect() as connection:
        rows = connection.execute(select(messages.c.user_id, messages.c.status))
        return {row.user_id: row.status for row in rows}


def users_with_attempts(database: Database) -> set[str]:
    with database.reader.connect() as connection:
        rows = connection.execute(
            select(messages.c.user_id).join(
                delivery_attempts, delivery_attempts.c.message_id == messages.c.message_id
            )
        )
        return set(rows.scalars())


def orphan_attempts(database: Database) -> int:
    """Delivery attempts whose message is gone."""
    with database.reader.connect() as connection:
        known = select(messages.c.message_id)
        rows = connection.execute(
            select(delivery_attempts.c.message_id).where(
                delivery_attempts.c.message_id.not_in(known)
            )
        )
        return len(rows.all())


def pruned_before(database: Database, user_ids: Iterable[str]) -> dict[str, int | None]:
    with database.reader.connect() as connection:
        rows = connection.execute(
            select(users.c.user_id, users.c.pruned_before_us).where(users.c.user_id.in_(user_ids))
        )
        return {row.user_id: row.pruned_before_us for row in rows}


class ProgressLog:
    """Records each progress report of a prune."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, kind: str, count: int) -> None:
        self.calls.append((kind, count))


def test_events_older_than_the_cutoff_are_deleted_in_batches_and_newer_ones_stay(
    database: Database, ruleset: RuleSet
) -> None:
    old = [payment_initiated(f"u_{n % 3}", OLD + timedelta(hours=n), n) for n in range(5)]
    new = [payment_initiated("u_0", RECENT, 10), payment_initiated("u_9", CUTOFF, 11)]
    store(database, ruleset, old + new, now=RECENT)
    progress = ProgressLog()

    totals = prune_history(database, cutoff=CUTOFF, batch_size=2, progress=progress)

    assert totals == PruneTotals(events=5, messages=0, redacted=0)
    assert progress.calls == [("events", 2), ("events", 4), ("events", 5)]
    # An event exactly at the cutoff is not older than it.
    assert event_ids(database) == {"evt_u_0_pay_10", "evt_u_9_pay_11"}


def test_pruning_twice_deletes_nothing_the_second_time(
    database: Database, ruleset: RuleSet
) -> None:
    store(database, ruleset, [payment_initiated("u_1", OLD, 1)], now=OLD)
    prune_history(database, cutoff=CUTOFF)
    progress = ProgressLog()

    assert prune_history(database, cutoff=CUTOFF, progress=progress) == PruneTotals(0, 0, 0)
    assert progress.calls == []


def test_sent_and_failed_messages_from_before_the_cutoff_go_with_their_delivery_attempts(
    database: Database, ruleset: RuleSet
) -> None:
    store(database, ruleset, [signup(u, OLD) for u in ("u_sent", "u_failed", "u_retry")], now=OLD)
    deliver(
        database, at=OLD, outcome_by_user={"u_sent": SENT, "u_failed": FAILED, "u_retry": "retry"}
    )
    store(database, ruleset, [signup("u_recent", RECENT)], now=RECENT)
    deliver(database, at=RECENT, outcome_by_user={"u_recent": SENT})
    store(database, ruleset, [signup("u_waiting", OLD)], now=OLD)  # never attempted
    progress = ProgressLog()

    totals = prune_history(database, cutoff=CUTOFF, batch_size=1, progress=progress)

    assert totals == PruneTotals(events=4, messages=2, redacted=0)
    assert [call for call in progress.calls if call[0] == "messages"] == [
        ("messages", 1),
        ("messages", 2),
    ]
    assert message_status_by_user(database) == {
        "u_retry": "pending",
        "u_waiting": "pending",
        "u_recent": SENT,
    }
    assert users_with_attempts(database) == {"u_retry", "u_recent"}
    assert orphan_attempts(database) == 0


def test_pending_messages_are_kept_whatever_their_age(database: Database, ruleset: RuleSet) -> None:
    ancient = datetime(2015, 1, 1, tzinfo=UTC)
    store(database, ruleset, [signup("u_waiting", ancient)], now=ancient)

    totals = prune_history(database, cutoff=RECENT)

    assert totals == PruneTotals(events=1, messages=0, redacted=0)
    assert message_status_by_user(database) == {"u_waiting": "pending"}


def test_users_whose_events_were_pruned_are_marked_and_their_audit_says_so(
    database: Database, database_url: str, ruleset: RuleSet, tmp_path: Path
) -> None:
    store(
        database,
        ruleset,
        [
            payment_initiated("u_gone", OLD, 1),
            payment_initiated("u_mixed", OLD, 2),
            payment_initiated("u_mixed", RECENT, 3),
            payment_initiated("u_fresh", RECENT, 4),
        ],
        now=RECENT,
    )

    prune_history(database, cutoff=CUTOFF)

    assert pruned_before(database, ["u_gone", "u_mixed", "u_fresh"]) == {
        "u_gone": to_micros(CUTOFF),
        "u_mixed": to_micros(CUTOFF),
        "u_fresh": None,
    }
    settings = Settings(
        database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"), dispatcher=False
    )
    with TestClient(create_app(settings)) as client:
        gone = client.get("/audit/u_gone").json()
        mixed = client.get("/audit/u_mixed").json()
        fresh = client.get("/audit/u_fresh").json()
    assert gone["user"]["history_pruned_before"] == "2024-06-01T00:00:00Z"
    assert gone["events"] == []
    assert mixed["user"]["history_pruned_before"] == "2024-06-01T00:00:00Z"
    assert [event["event_id"] for event in mixed["events"]] == ["evt_u_mixed_pay_3"]
    assert fresh["user"]["history_pruned_before"] is None
    assert [event["event_id"] for event in fresh["events"]] == ["evt_u_fresh_pay_4"]


def test_herald_prune_deletes_history_older_than_the_given_age_and_reports_counts(
    database: Database, database_url: str, ruleset: RuleSet
) -> None:
    now = datetime.now(UTC)
    long_ago, lately = now - timedelta(days=500), now - timedelta(days=10)
    store(database, ruleset, [signup(u, long_ago) for u in ("u_a", "u_b", "u_c")], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_a": SENT, "u_b": SENT, "u_c": FAILED})
    store(database, ruleset, [signup("u_d", lately)], now=lately)

    result = CliRunner().invoke(
        cli, ["prune", "--older-than", "400d", "--database", database_url, "--batch-size", "2"]
    )

    assert result.exit_code == 0, result.output
    assert "pruned 3 events and 0 messages" in result.output
    assert "redacted 3 messages" in result.output  # welcome emails keep their limit
    # The fence the rules now go by, printed as the audit shows it.
    audit = user_audit(database, "u_a", limit=1, cursor=None)
    assert audit is not None
    shown = audit["user"]["history_pruned_before"]
    assert shown.endswith("T00:00:00Z")
    assert f"users whose events were pruned: history_pruned_before {shown} in their audit" in (
        result.output
    )
    assert "events: 2 deleted so far" in result.output
    assert event_ids(database) == {"evt_u_d_signup"}
    assert message_status_by_user(database) == {
        "u_a": SENT,
        "u_b": SENT,
        "u_c": FAILED,
        "u_d": "pending",
    }


def test_retrying_every_dead_letter_says_how_many_a_prune_redacted_are_left(
    database: Database, database_url: str, ruleset: RuleSet
) -> None:
    """It said "re-queued 0 message(s)" alone, while the metrics still counted the
    redacted dead letters as failed: an operator could not tell why they stayed."""
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=500)
    store(database, ruleset, [signup(u, long_ago) for u in ("u_a", "u_b")], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_a": FAILED, "u_b": FAILED})
    pruned = CliRunner().invoke(cli, ["prune", "--older-than", "400d", "--database", database_url])
    assert "redacted 2 messages" in pruned.output

    result = CliRunner().invoke(cli, ["messages", "retry", "--failed", "--database", database_url])

    assert result.exit_code == 0, result.output
    assert "re-queued 0 message(s)" in result.output
    assert "left 2 dead letter(s) a prune redacted" in " ".join(result.output.split())
    assert message_status_by_user(database) == {"u_a": FAILED, "u_b": FAILED}


def test_a_prune_reading_another_rule_file_redacts_the_messages_of_rules_it_lacks(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    """Run without the server's rule file (a scheduled job without HERALD_RULES reads the
    default one), a prune deleted the message holding a once-per-user limit of a rule
    that file lacks: the user's next signup would have had it sent again."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events: {signup_completed: {}}\n"
        "rules: [{id: VIP_ALERT, trigger: signup_completed, channel: internal, "
        "limit: once_per_user}]\n",
        encoding="utf-8",
    )
    long_ago = datetime.now(UTC) - timedelta(days=500)
    store(database, load_ruleset(rules), [signup("u_v", long_ago)], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_v": SENT})

    result = CliRunner().invoke(cli, ["prune", "--older-than", "400d", "--database", database_url])

    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "does not have (VIP_ALERT) are redacted rather than deleted" in said
    assert "pruned 1 event and 0 messages" in said and "redacted 1 message " in said
    assert message_status_by_user(database) == {"u_v": SENT}


def test_herald_prune_dry_run_reports_what_it_would_prune_and_changes_nothing(
    database: Database, database_url: str, ruleset: RuleSet
) -> None:
    now = datetime.now(UTC)
    long_ago, lately = now - timedelta(days=500), now - timedelta(days=10)
    store(database, ruleset, [signup("u_a", long_ago), signup("u_b", long_ago)], now=long_ago)
    store(database, ruleset, [payment_initiated("u_a", long_ago, 1)], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_a": SENT, "u_b": FAILED})
    store(database, ruleset, [signup("u_c", lately)], now=lately)

    result = CliRunner().invoke(
        cli, ["prune", "--older-than", "400d", "--database", database_url, "--dry-run"]
    )

    assert result.exit_code == 0, result.output
    assert "would prune 3 events and 0 messages" in result.output
    assert "would redact 2 messages" in result.output
    [would] = re.findall(
        r"would be pruned: history_pruned_before (\S+) in their audit", result.output
    )
    assert event_ids(database) == {
        "evt_u_a_signup",
        "evt_u_b_signup",
        "evt_u_a_pay_1",
        "evt_u_c_signup",
    }
    assert pruned_before(database, ["u_a", "u_b"]) == {"u_a": None, "u_b": None}
    done = CliRunner().invoke(cli, ["prune", "--older-than", "400d", "--database", database_url])
    assert "pruned 3 events and 0 messages" in done.output  # as the dry run said
    assert "redacted 2 messages" in done.output
    assert f"were pruned: history_pruned_before {would} in their audit" in done.output


@pytest.mark.parametrize(
    ("age", "message"),
    [
        ("forever", "400d or 36h"),
        ("400", "400d or 36h"),
        ("-5d", "400d or 36h"),
        ("3w", "400d or 36h"),
        ("99999999999d", "400d or 36h"),
        ("999999d", "at most 36500d"),  # past the first date a datetime can hold
        ("0d", "at least 1d"),  # would delete every event, even the one just stored
        ("23h", "at least 1d"),
    ],
)
def test_herald_prune_refuses_an_unreadable_or_too_short_age_and_deletes_nothing(
    database: Database, database_url: str, ruleset: RuleSet, age: str, message: str
) -> None:
    store(database, ruleset, [payment_initiated("u_1", OLD, 1)], now=OLD)

    result = CliRunner().invoke(
        cli, ["prune", "--older-than", age, "--database", database_url], env={"COLUMNS": "200"}
    )

    assert result.exit_code == 2
    assert message in result.output
    assert "Invalid value for '--older-than'" in result.output
    assert event_ids(database) == {"evt_u_1_pay_1"}


def test_herald_prune_refuses_a_batch_larger_than_one_statement_can_hold(
    database: Database, database_url: str, ruleset: RuleSet
) -> None:
    # PostgreSQL takes at most 65,535 values in a statement: 70,000 failed mid-prune.
    store(database, ruleset, [payment_initiated("u_1", OLD, 1)], now=OLD)

    result = CliRunner().invoke(
        cli,
        ["prune", "--older-than", "400d", "--batch-size", "70000", "--database", database_url],
        env={"COLUMNS": "200"},
    )

    assert result.exit_code == 2
    assert "70000 is not in the range 1<=x<=20000" in result.output
    assert event_ids(database) == {"evt_u_1_pay_1"}


def test_herald_prune_on_a_database_without_herald_schema_says_to_upgrade_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "empty.db"
    path.touch()  # an empty file is an empty SQLite database
    url = f"sqlite:///{path}"

    result = CliRunner().invoke(cli, ["prune", "--older-than", "400d", "--database", url])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert "herald db upgrade" in result.output


def test_herald_prune_refuses_an_in_memory_database_with_a_clear_message() -> None:
    result = CliRunner().invoke(
        cli, ["prune", "--older-than", "400d", "--database", "sqlite:///:memory:"]
    )

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert "in-memory SQLite" in result.output


def test_a_once_per_user_limit_outlives_the_pruned_history(
    database: Database, ruleset: RuleSet
) -> None:
    long_ago = datetime(2023, 1, 5, 9, 0, tzinfo=UTC)
    store(database, ruleset, [signup("u_old", long_ago)], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_old": SENT})
    totals = prune_history(
        database, cutoff=long_ago + timedelta(days=400), keep_rules={"WELCOME_EMAIL"}
    )
    assert totals.redacted == 1 and totals.messages == 0
    with database.reader.connect() as connection:
        kept = connection.execute(select(messages)).one()
    assert kept.body == "(pruned)" and kept.recipient == "" and kept.subject == ""
    assert orphan_attempts(database) == 0 and users_with_attempts(database) == set()

    later = long_ago + timedelta(days=500)
    again = Event(
        "evt_u_old_signup_2",
        "u_old",
        "signup_completed",
        later,
        {},
        signup("u_old", later).user_traits,
    )
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [again], ruleset, now=later)
        uow.commit()
    assert result.decisions[0].outcome.value == "suppressed"


def test_a_late_event_from_before_the_pruned_history_sends_nothing_again(
    database: Database, ruleset: RuleSet
) -> None:
    """Its day's insufficient-funds email was sent and pruned with the history: deciding
    the late event again would send that day's email a second time."""
    day = datetime(2024, 1, 10, 20, 0, tzinfo=UTC)
    first = Event(
        "evt_pf_1",
        "u_late",
        "payment_failed",
        day,
        {"amount": 5.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"email": "late@example.com"},
    )
    store(database, ruleset, [first], now=day)
    deliver(database, at=day, outcome_by_user={"u_late": SENT})
    prune_history(database, cutoff=day + timedelta(days=1))
    assert message_status_by_user(database) == {}  # the email that held the day is gone

    late = Event(
        "evt_pf_2",
        "u_late",
        "payment_failed",
        day + timedelta(hours=1),
        dict(first.properties),
        dict(first.user_traits),
    )
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [late], ruleset, now=day + timedelta(days=2))
        uow.commit()

    assert [d.outcome.value for d in result.decisions] == ["skipped", "skipped"]
    assert "was pruned" in result.decisions[0].reason
    assert message_status_by_user(database) == {}


def test_redaction_goes_a_batch_per_transaction_and_a_second_prune_redacts_nothing(
    database: Database, ruleset: RuleSet
) -> None:
    long_ago = datetime(2023, 1, 5, 9, 0, tzinfo=UTC)
    names = ("u_a", "u_b", "u_c")
    store(database, ruleset, [signup(u, long_ago) for u in names], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user=dict.fromkeys(names, SENT))
    cutoff = long_ago + timedelta(days=400)
    progress = ProgressLog()

    totals = prune_history(
        database, cutoff=cutoff, batch_size=1, progress=progress, keep_rules={"WELCOME_EMAIL"}
    )

    assert totals.redacted == 3
    assert [c for c in progress.calls if c[0] == "redacted"] == [
        ("redacted", 1),
        ("redacted", 2),
        ("redacted", 3),
    ]
    assert users_with_attempts(database) == set()
    again = ProgressLog()
    totals = prune_history(
        database, cutoff=cutoff, batch_size=1, progress=again, keep_rules={"WELCOME_EMAIL"}
    )
    assert totals.redacted == 0 and again.calls == []


def test_the_message_walk_follows_the_outbox_index_instead_of_sorting_every_message(
    tmp_path: Path, ruleset: RuleSet
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'plans.db'}")
    upgrade(database)
    long_ago = datetime(2023, 1, 5, 9, 0, tzinfo=UTC)
    store(database, ruleset, [signup("u_a", long_ago)], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_a": SENT})
    pages: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
        if sql.lstrip().startswith("SELECT") and "ORDER BY messages.due_us" in sql:
            pages.append((sql, params))

    sqlalchemy_event.listen(database.reader, "before_cursor_execute", remember)
    prune_history(database, cutoff=CUTOFF, keep_rules={"WELCOME_EMAIL"})

    assert pages
    with database.reader.connect() as connection:
        for sql, params in pages:
            plan = " | ".join(
                row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            )
            assert "USING INDEX ix_messages_status_due (status=? AND due_us>?)" in plan, plan
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan  # a sort of every match
    database.dispose()


def test_the_audit_still_lists_the_messages_whose_events_were_pruned_on_its_first_page(
    database: Database, database_url: str, ruleset: RuleSet, tmp_path: Path
) -> None:
    store(database, ruleset, [signup("u_p", OLD)], now=OLD)
    deliver(database, at=OLD, outcome_by_user={"u_p": SENT})
    unpaid = Event(
        "evt_u_p_fail",
        "u_p",
        "payment_failed",
        OLD,
        {"amount": 5.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"email": "u_p@example.com"},
    )
    store(database, ruleset, [unpaid], now=OLD)  # its email is never delivered
    recent = [payment_initiated("u_p", RECENT + timedelta(hours=n), n) for n in (1, 2)]
    store(database, ruleset, recent, now=RECENT)
    prune_history(database, cutoff=CUTOFF, keep_rules={"WELCOME_EMAIL"})
    settings = Settings(
        database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"), dispatcher=False
    )

    with TestClient(create_app(settings)) as client:
        first = client.get("/audit/u_p", params={"limit": 1}).json()
        second = client.get(
            "/audit/u_p", params={"limit": 1, "cursor": first["next_cursor"]}
        ).json()

    listed = {m["rule"]: (m["status"], m["body"]) for m in first["messages"]}
    assert listed == {
        "WELCOME_EMAIL": (SENT, "(pruned)"),  # redacted, still holding the lifetime limit
        "INSUFFICIENT_FUNDS_EMAIL": ("pending", listed["INSUFFICIENT_FUNDS_EMAIL"][1]),
    }
    assert [e["event_id"] for e in first["events"] + second["events"]] == [
        "evt_u_p_pay_2",
        "evt_u_p_pay_1",
    ]
    assert second["messages"] == []


def insufficient_funds(event_id: str, user: str, at: datetime) -> Event:
    """An event that asks for the user's insufficient-funds email of its UTC day."""
    return Event(
        event_id,
        user,
        "payment_failed",
        at,
        {"amount": 5.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"email": f"{user}@example.com"},
    )


def test_a_late_event_later_on_the_day_of_the_cutoff_sends_nothing_again(
    database: Database, ruleset: RuleSet
) -> None:
    """The cutoff falls inside a day whose email was sent and pruned: a late event of the
    same day, though after the cutoff, would send that day's email a second time."""
    morning = datetime(2024, 1, 10, 10, 0, tzinfo=UTC)
    store(database, ruleset, [insufficient_funds("evt_am", "u_day", morning)], now=morning)
    deliver(database, at=morning, outcome_by_user={"u_day": SENT})
    prune_history(database, cutoff=morning + timedelta(hours=2))
    assert message_status_by_user(database) == {}
    assert pruned_before(database, ["u_day"]) == {
        "u_day": to_micros(datetime(2024, 1, 11, tzinfo=UTC))  # the whole day is in doubt
    }

    afternoon = insufficient_funds("evt_pm", "u_day", morning + timedelta(hours=4))
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [afternoon], ruleset, now=morning + timedelta(days=2))
        uow.commit()

    assert [d.outcome.value for d in result.decisions] == ["skipped", "skipped"]
    assert "was pruned" in result.decisions[0].reason
    assert message_status_by_user(database) == {}


def test_a_message_is_pruned_only_with_its_event(database: Database, ruleset: RuleSet) -> None:
    """An event dated after the cutoff stays, and so does the message it created before
    the cutoff: that message holds its day's limit."""
    received = datetime(2024, 1, 10, 10, 0, tzinfo=UTC)
    ahead = received + timedelta(days=10)  # a client's clock, or a scheduled payment
    store(database, ruleset, [insufficient_funds("evt_ahead", "u_ahead", ahead)], now=received)
    deliver(database, at=received, outcome_by_user={"u_ahead": SENT})

    totals = prune_history(database, cutoff=received + timedelta(days=2))

    assert totals == PruneTotals(events=0, messages=0, redacted=0)
    assert message_status_by_user(database) == {"u_ahead": SENT}
    again = insufficient_funds("evt_ahead_2", "u_ahead", ahead + timedelta(hours=1))
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [again], ruleset, now=received + timedelta(days=3))
        uow.commit()
    assert result.decisions[0].outcome.value == "suppressed"


def test_a_prune_waits_for_an_ingestion_in_progress_before_it_fences_the_history(
    database: Database, ruleset: RuleSet
) -> None:
    """An ingestion that read a user's profile before the fence and the held dedup keys
    after the prune deleted that day's message would send the message again: the fence
    waits until no ingestion is in progress."""
    store(database, ruleset, [payment_initiated("u_old", OLD, 1)], now=OLD)
    pruned: list[PruneTotals] = []
    with UnitOfWork(database) as ingestion:
        ingestion.lock(["u_new", "evt_u_new"])  # what an ingestion takes before it reads
        ingestion.users.get_many(["u_new"])
        prune = threading.Thread(
            target=lambda: pruned.append(prune_history(database, cutoff=CUTOFF))
        )
        prune.start()
        prune.join(timeout=0.5)
        assert not pruned, "the prune fenced history while an ingestion was in progress"
        ingestion.commit()
    prune.join(timeout=30)

    assert pruned == [PruneTotals(events=1, messages=0, redacted=0)]


def test_a_later_prune_with_an_older_cutoff_does_not_move_the_pruned_history_back(
    database: Database, ruleset: RuleSet
) -> None:
    """The first prune deleted June's emails; a second, keeping more (400 days), deletes a
    late event from January, and must not reopen February to June for new decisions."""
    june = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)
    store(database, ruleset, [insufficient_funds("evt_june", "u_back", june)], now=june)
    deliver(database, at=june, outcome_by_user={"u_back": SENT})
    prune_history(database, cutoff=datetime(2024, 7, 1, tzinfo=UTC))
    late = insufficient_funds("evt_january", "u_back", datetime(2024, 1, 5, tzinfo=UTC))
    store(database, ruleset, [late], now=datetime(2024, 7, 2, tzinfo=UTC))  # skipped, kept

    prune_history(database, cutoff=datetime(2024, 2, 1, tzinfo=UTC))

    assert event_ids(database) == set()
    assert pruned_before(database, ["u_back"]) == {
        "u_back": to_micros(datetime(2024, 7, 1, tzinfo=UTC))
    }


def old_history(path: Path, ruleset: RuleSet) -> Database:
    """A SQLite database at ``path`` holding 3,000 events (300 users) from long ago."""
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    for start in range(0, 3000, 500):
        batch = [payment_initiated(f"u_{n % 300}", OLD, n) for n in range(start, start + 500)]
        store(database, ruleset, batch, now=OLD)
    return database


def test_herald_prune_alone_on_sqlite_keeps_the_write_ahead_log_short(
    tmp_path: Path, ruleset: RuleSet
) -> None:
    """With the server stopped, no checkpointer thread copies the log into the database
    file: the log grew by every page the prune wrote, past the size of the database."""
    path = tmp_path / "history.db"
    database = old_history(path, ruleset)
    database.dispose()  # the last connection closing copies the log in and removes it
    stored = path.stat().st_size
    # Another connection open on the file, as a server's would be, keeps the log file at
    # the largest size it reached (SQLite writes a log that starts over from its start).
    watcher = sqlite3.connect(path, isolation_level=None)
    watcher.execute("SELECT count(*) FROM events").fetchone()
    try:
        url = f"sqlite:///{path}"
        result = CliRunner().invoke(
            cli, ["prune", "--older-than", "400d", "--database", url, "--batch-size", "20"]
        )
        largest_log = Path(f"{path}-wal").stat().st_size
    finally:
        watcher.close()

    assert result.exit_code == 0, result.output
    assert "pruned 3,000 events" in result.output
    # The progress counts as the summary does: "3000" beside "3,000" read as two numbers.
    assert "events: 3,000 deleted so far" in result.output
    # A batch's pages at a time (a fifth of the database here); without checkpoints the
    # log reached twelve times the database.
    assert largest_log < stored, (largest_log, stored)


@pytest.mark.parametrize(
    ("stop", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],  # Ctrl-C; a cron job's `timeout`
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupted_prune_says_what_stays_done_and_how_to_finish(
    tmp_path: Path, ruleset: RuleSet, stop: signal.Signals, code: int
) -> None:
    path = tmp_path / "history.db"
    database = old_history(path, ruleset)
    url = f"sqlite:///{path}"
    arguments = ["prune", "--older-than", "400d", "--batch-size", "5", "--database", url]
    with subprocess.Popen(
        [*herald_command(), *arguments],
        env=herald_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as pruning:
        assert pruning.stdout is not None
        first = pruning.stdout.readline()  # the first batch is done
        pruning.send_signal(stop)
        rest = pruning.stdout.read()
        pruning.wait(30)

    assert "events: 5 deleted so far" in first, first + rest
    assert pruning.returncode == code, rest
    assert "Traceback" not in rest
    assert "interrupted: the batches counted above are pruned and stay so; run the same " in rest
    # Counted as the summary counts, with a thousands separator (`events: 1,000 ...`).
    said = int(re.findall(r"events: ([\d,]+) deleted so far", first + rest)[-1].replace(",", ""))
    deleted = 3000 - len(event_ids(database))
    # What was counted is gone; a batch committed as Ctrl-C came may not have been counted.
    assert said <= deleted <= said + 5, (said, deleted)
    again = CliRunner().invoke(cli, arguments)
    left = event_ids(database)
    database.dispose()
    assert again.exit_code == 0, again.output
    # The same command again: the rest, and only the rest.
    assert f"pruned {3000 - deleted:,} events" in again.output
    assert left == set()
