"""`herald prune`: what it deletes and reports, its dry run, the ages, batches and databases
it refuses, the write-ahead log it keeps short, and what it says when interrupted."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset
from herald.service.audit import user_audit
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.outbox import FAILED, SENT
from tests.support.processes import herald_environment, run_herald
from tests.support.read_only import read_only
from tests.support.retention import (
    OLD,
    deliver,
    event_ids,
    message_status_by_user,
    payment_initiated,
    pruned_before,
    pruning_in_small_batches,
    signup,
    store,
)


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


def test_herald_prune_neither_reads_nor_refuses_the_stub_provider_s_file(
    database: Database, database_url: str, ruleset: RuleSet, tmp_path: Path
) -> None:
    """A prune run by a cron job that shares the server's environment: it deletes from
    the database alone, so a HERALD_OUTBOX_FILE the server would refuse (a FIFO, whose
    opening waits for good) neither stops it nor holds it, and the file is left as it was."""
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=500)
    store(database, ruleset, [signup("u_a", long_ago)], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_a": SENT})
    fifo = tmp_path / "outbox.jsonl"
    os.mkfifo(fifo)

    result = CliRunner().invoke(
        cli,
        ["prune", "--older-than", "400d", "--database", database_url],
        env={"HERALD_OUTBOX_FILE": str(fifo)},
    )

    assert result.exit_code == 0, result.output
    assert "pruned 1 event and 0 messages" in result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert event_ids(database) == set()


def test_a_dry_run_counts_on_a_database_that_refuses_writes(
    database: Database, database_url: str, ruleset: RuleSet, tmp_path: Path
) -> None:
    """It changes nothing, yet it was refused as a prune would be: on a standby or a
    read-only copy of the file, an operator could not see what a prune would take."""
    long_ago = datetime.now(UTC) - timedelta(days=500)
    store(database, ruleset, [signup("u_a", long_ago)], now=long_ago)

    with read_only(database_url) as (url, prefix):
        command = ["prune", "--older-than", "400d", "--database", url]
        env = herald_environment()
        dry = run_herald([*command, "--dry-run"], env=env, cwd=tmp_path, prefix=prefix)
        done = run_herald(command, env=env, cwd=tmp_path, prefix=prefix)

    assert dry.returncode == 0, dry.stderr
    assert "would prune 1 event and 0 messages" in dry.stderr
    assert done.returncode == 1
    assert "error: the database refuses writes" in done.stderr
    assert event_ids(database) == {"evt_u_a_signup"}


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
    with pruning_in_small_batches(url) as pruning:
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
    again = CliRunner().invoke(
        cli, ["prune", "--older-than", "400d", "--batch-size", "5", "--database", url]
    )
    left = event_ids(database)
    database.dispose()
    assert again.exit_code == 0, again.output
    # The same command again: the rest, and only the rest.
    assert f"pruned {3000 - deleted:,} events" in again.output
    assert left == set()


def test_a_prune_of_many_small_batches_says_its_progress_every_few_seconds_not_each_batch(
    tmp_path: Path, ruleset: RuleSet
) -> None:
    """A line a batch: 3,000 lines for 3,000 events at --batch-size 1, and thousands in a
    cron job's mail for a large history at the default size."""
    path = tmp_path / "history.db"
    old_history(path, ruleset).dispose()
    url = f"sqlite:///{path}"

    result = CliRunner().invoke(
        cli, ["prune", "--older-than", "400d", "--database", url, "--batch-size", "1"]
    )

    assert result.exit_code == 0, result.output
    progress = [line for line in result.output.splitlines() if "so far" in line]
    assert progress[0] == "  events: 1 deleted so far"  # the first batch, at once
    assert progress[-1] == "  events: 3,000 deleted so far"  # the last, however soon
    assert len(progress) < 20, len(progress)
