"""Maintenance commands: ``herald db upgrade``, ``current`` and ``backup``, ``herald prune``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.backup import db_backup
from herald.cli.database_opening import fail_if_unavailable, open_database
from herald.cli.interrupts import Terminated, terminating_as_interrupted
from herald.cli.options import DatabaseOpt, database_url_from, settings_from
from herald.cli.output import counted, fail, fail_on_rule_file
from herald.config import RetentionSettings
from herald.observability.operator_lines import console

if TYPE_CHECKING:
    from herald.rules.definition import RuleSet
    from herald.service.retention import PruneTotals
    from herald.store.database import Database

db_app = typer.Typer(
    help="The database: `current` names its schema revision, `upgrade` migrates it to this "
    "version of Herald, `backup` copies a running SQLite database.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = None) -> None:
    """Migrate the database schema to this version of Herald."""
    from herald.observability.logging import first_line
    from herald.store.migrate import SchemaMismatch, current_revision, upgrade

    db = open_database(database_url_from(database), schema="any", create=True)
    try:
        # The revision it started from once its turn came: another upgrade may have gone first.
        before = upgrade(db, progress=lambda step: console.print(f"  {step}"))
        after = current_revision(db)
        if before == after:  # "0004 -> 0004" read as if something had been done
            console.print(f"schema: already at {after}, nothing to apply")
        else:
            console.print(f"schema: {before or 'empty'} -> {after}")
    except KeyboardInterrupt:
        # The upgrade is one transaction: the revisions it had applied were rolled back.
        fail(
            f"interrupted: the database is left at {_revision_left(db)}; run `herald db "
            "upgrade` again",
            code=130,
        )
    except SchemaMismatch as exc:
        fail(str(exc))
    except Exception as exc:  # the database refused (read-only, full disk, a lock held)
        fail(f"the upgrade failed and was rolled back: {type(exc).__name__}: {first_line(exc)}")
    finally:
        db.dispose()


# `db current --check`'s exit when an upgrade is pending: apart from 1 (an error: the
# database out of reach, or written by a newer Herald) and 2 (a usage error), so that a
# deployment script tells "run the upgrade" from "something is wrong".
UPGRADE_PENDING = 3


@db_app.command("current")
def db_current(
    database: DatabaseOpt = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help=f"Exit {UPGRADE_PENDING} when `herald db upgrade` would apply revisions "
            "(0 when the schema is current, 1 for an error), for a deployment script to "
            "ask whether an upgrade is pending without reading the line",
        ),
    ] = False,
) -> None:
    """Say which schema revision the database is at, and what `herald db upgrade` would
    apply to it; changes nothing."""
    from herald.store.migrate import SchemaMismatch, head_revision, herald_revision, pending_steps

    db = open_database(database_url_from(database), schema="any", writes=False)
    try:
        current = herald_revision(db)
        steps = pending_steps(current)
    except SchemaMismatch as exc:
        fail(str(exc))
    finally:
        db.dispose()
    at = f"revision {current}" if current else "no revision (an empty database)"
    if not steps:
        typer.echo(f"schema at {at}: current, the newest this Herald knows")
        return
    typer.echo(
        f"schema at {at}; this Herald needs {head_revision()}: `herald db upgrade` would "
        f"apply {len(steps)} revision(s): {'; '.join(steps)}"
    )
    if check:
        raise typer.Exit(UPGRADE_PENDING)


db_app.command("backup")(db_backup)


def _revision_left(db: Database) -> str:
    """The schema revision ``db`` is at, read again, as the operator is told it."""
    from herald.store.migrate import current_revision

    try:
        revision = current_revision(db)
    except Exception:  # unreachable meanwhile: the upgrade was rolled back all the same
        return "the revision it was at before"
    return f"revision {revision}" if revision else "no revision (empty)"


def _rules_not_in(ruleset: RuleSet, db: Database, cutoff: datetime) -> frozenset[str]:
    """The rules of prunable messages that ``ruleset`` does not have, said: their
    messages are redacted, not deleted. Run with another file than the server's (a
    scheduled job without ``HERALD_RULES`` reads the default one), a prune deleted the
    messages holding those rules' once-per-user limits, and a user could get a second
    welcome email."""
    from herald.domain.timeutil import to_micros
    from herald.store.unit_of_work import ReadOnly

    with ReadOnly(db) as read:
        found = read.retention.rules_of_finished(to_micros(cutoff))
    unknown = frozenset(found - {rule.id for rule in ruleset.rules})
    if unknown:
        console.print(
            f"messages of rules the rule file {ruleset.source} does not have "
            f"({', '.join(sorted(unknown))}) are redacted rather than deleted, as their "
            "limits may be once per user: name the server's rule file with --rules",
            markup=False,  # a path may hold brackets
        )
    return unknown


_LONGEST_AGE = timedelta(days=36_500)  # event times start in 1900 (domain/timeutil.py)
# Today's messages hold today's once-per-day limits: pruning them would let a second
# message through, and "0d" would empty the history in one keystroke.
_SHORTEST_AGE = timedelta(days=1)


def _parse_age(text: str) -> timedelta:
    """``text`` as an age: whole days (``400d``) or hours (``36h``), from 1d to 36500d;
    raises ``typer.BadParameter`` saying what it takes otherwise."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*([dh])\s*", text)
    if not match:
        raise typer.BadParameter("use a number of days or hours, e.g. 400d or 36h")
    amount = int(match[1])
    age = timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount)
    if age > _LONGEST_AGE:
        raise typer.BadParameter("at most 36500d: nothing Herald stores is older")
    if age < _SHORTEST_AGE:
        raise typer.BadParameter(
            "at least 1d (or 24h): a younger history holds the limits of messages sent today"
        )
    return age


def prune(
    # Parsed as the option's type, so that a refusal names the option.
    age: Annotated[
        timedelta,
        typer.Option(
            "--older-than",
            parser=_parse_age,
            metavar="AGE",
            help="an age in days or hours, at least 1d: 400d, 36h",
        ),
    ],
    database: DatabaseOpt = None,
    # At most 20,000: a batch's keys go in one statement, and PostgreSQL takes at most
    # 65,535 values in one.
    batch_size: Annotated[
        int, typer.Option(min=1, max=20_000, metavar="N", help="rows per transaction (1 to 20,000)")
    ] = 5000,
    rules: Annotated[
        str | None,
        typer.Option(
            "--rules",
            metavar="PATH",
            help="the server's rule file: the messages of its once-per-user rules are "
            "redacted, not deleted (default: the packaged one; env HERALD_RULES)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would go, and change nothing")
    ] = False,
) -> None:
    """Delete events and finished messages older than an age (in days or hours, e.g. 400d
    or 36h; at least 1d), in small transactions.

    Messages of rules limited once per user are redacted instead of deleted, so that
    their limit still holds after the history is gone."""
    from herald.bootstrap import utc_now
    from herald.domain.timeutil import iso
    from herald.rules.loader import RuleFileError, load_ruleset
    from herald.service.retention import history_fence

    settings = settings_from(RetentionSettings, database_url=database, rules=rules)
    try:
        ruleset = load_ruleset(settings.rules)
    except RuleFileError as exc:
        fail_on_rule_file(exc)
    # Deleting from a schema this version does not know could delete the wrong rows.
    # A dry run only reads: it may count on a standby or a read-only file.
    db = open_database(settings.database_url, schema="current", writes=not dry_run)
    # Whole seconds: the moment printed is the one applied.
    cutoff = (utc_now() - age).replace(microsecond=0)
    lifetime = ruleset.lifetime_rules() | _rules_not_in(ruleset, db, cutoff)
    fence = f"history_pruned_before {iso(history_fence(cutoff))} in their audit"
    if dry_run:
        _say_what_would_go(db, cutoff=cutoff, keep_rules=lifetime, fence=fence)
        return
    totals = _prune(db, cutoff=cutoff, batch_size=batch_size, keep_rules=lifetime)
    console.print(
        f"pruned {counted(totals.events, 'event')} and {counted(totals.messages, 'message')} "
        f"from before {iso(cutoff)}; redacted {counted(totals.redacted, 'message')} "
        "kept for their once-per-user limits"
    )
    if totals.events:
        # The end of the cutoff's UTC day, not the cutoff: what the rules go by from now on.
        console.print(f"users whose events were pruned: {fence}")


def _prune(
    db: Database, *, cutoff: datetime, batch_size: int, keep_rules: frozenset[str]
) -> PruneTotals:
    """Prune ``db`` at ``cutoff``, saying each batch's progress; ``db`` is disposed of.
    Interrupted (Ctrl-C, SIGTERM), or the database gone mid-way, it exits saying that the
    batches done stay done."""
    from herald.cli.progress_lines import ThrottledProgress
    from herald.service.retention import prune_history

    progress = ThrottledProgress(
        console.print,
        lambda kind, n: f"  {kind}: {n:,} {'redacted' if kind == 'redacted' else 'deleted'} so far",
    )
    try:
        with terminating_as_interrupted():
            try:
                return prune_history(
                    db,
                    cutoff=cutoff,
                    batch_size=batch_size,
                    progress=progress,
                    keep_rules=keep_rules,
                )
            finally:
                progress.flush()  # the counts above what follows are those done
    except KeyboardInterrupt as stopped:
        # Each batch is a transaction of its own: those counted above are done, the one
        # under way was rolled back, and the messages of pruned events still wait.
        fail(
            "interrupted: the batches counted above are pruned and stay so; run the same "
            "command again to prune the rest (and the finished messages of those events)",
            code=143 if isinstance(stopped, Terminated) else 130,  # 128 + the signal
        )
    except Exception as exc:
        fail_if_unavailable(
            exc,
            left="the batches counted above are pruned and stay so; run the same command "
            "again to prune the rest",
        )
        raise
    finally:
        db.dispose()


def _say_what_would_go(
    db: Database, *, cutoff: datetime, keep_rules: frozenset[str], fence: str
) -> None:
    """``prune --dry-run``: count what a prune at ``cutoff`` would delete and redact, and
    say so, changing nothing; ``db`` is disposed of."""
    from herald.domain.timeutil import iso
    from herald.service.retention import count_prunable

    totals = count_prunable(db, cutoff=cutoff, keep_rules=keep_rules)
    db.dispose()
    console.print(
        f"would prune {counted(totals.events, 'event')} and "
        f"{counted(totals.messages, 'message')} from before {iso(cutoff)}; would redact "
        f"{counted(totals.redacted, 'message')} kept for their once-per-user limits (dry "
        "run: nothing changed)"
    )
    if totals.events:
        console.print(f"users whose events would be pruned: {fence}")
