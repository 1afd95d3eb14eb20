"""Retention on a real database, SQLite and PostgreSQL: old events and finished messages
go in small transactions, pending messages stay, the audit says what was pruned, and a
prune waits for an ingestion in progress."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event as sqlalchemy_event

from herald.api.app import create_app
from herald.config import Settings
from herald.domain.model import Event
from herald.domain.timeutil import to_micros
from herald.rules.definition import RuleSet
from herald.service.ingest import ingest
from herald.service.retention import PruneTotals, prune_history
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.outbox import FAILED, SENT
from herald.store.unit_of_work import UnitOfWork
from tests.support.retention import (
    CUTOFF,
    OLD,
    RECENT,
    deliver,
    event_ids,
    insufficient_funds,
    message_status_by_user,
    orphan_attempts,
    payment_initiated,
    pruned_before,
    signup,
    store,
    users_with_attempts,
)


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


def test_a_pruned_event_s_message_a_suppression_names_is_listed_once(
    database: Database, database_url: str, ruleset: RuleSet, tmp_path: Path
) -> None:
    store(database, ruleset, [signup("u_twice", OLD)], now=OLD)
    deliver(database, at=OLD, outcome_by_user={"u_twice": SENT})
    second_signup = Event(
        "evt_u_twice_signup_again",
        "u_twice",
        "signup_completed",
        RECENT,
        user_traits={"email": "u_twice@example.com", "marketing_opt_in": True},
    )
    store(database, ruleset, [second_signup], now=RECENT)  # suppressed by the first's email
    prune_history(database, cutoff=CUTOFF, keep_rules={"WELCOME_EMAIL"})
    settings = Settings(
        database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"), dispatcher=False
    )

    with TestClient(create_app(settings)) as client:
        page = client.get("/audit/u_twice").json()

    (decision,) = page["events"][0]["decisions"]
    assert decision["outcome"] == "suppressed"
    assert [m["message_id"] for m in page["messages"]] == [decision["message_id"]]


def test_an_unsubscribe_leaves_a_dead_letter_a_prune_redacted_as_it_was(
    database: Database, database_url: str, ruleset: RuleSet, tmp_path: Path
) -> None:
    """A redacted dead letter holds no recipient or text: `messages retry` leaves it, so
    it is not waiting to go, and an unsubscribe has nothing of it to cancel."""
    store(database, ruleset, [signup("u_dead", OLD)], now=OLD)
    deliver(database, at=OLD, outcome_by_user={"u_dead": FAILED})
    prune_history(database, cutoff=CUTOFF, keep_rules={"WELCOME_EMAIL"})
    settings = Settings(
        database_url=database_url, outbox_file=str(tmp_path / "outbox.jsonl"), dispatcher=False
    )

    with TestClient(create_app(settings)) as client:
        answer = client.post("/users/u_dead/preferences", json={"unsubscribed": ["email"]})
        (message,) = client.get("/audit/u_dead").json()["messages"]

    assert answer.json()["cancelled_messages"] == []
    assert (message["status"], message["body"]) == (FAILED, "(pruned)")


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
