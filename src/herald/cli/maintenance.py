"""Maintenance commands: ``herald db upgrade``, ``herald messages failed`` and ``retry``,
``herald prune``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from herald.cli.common import (
    DatabaseOpt,
    Terminated,
    console,
    database_url_from,
    fail,
    fail_on_rule_file,
    open_database,
    settings_from,
    terminating_as_interrupted,
)
from herald.config import RuleFileSettings

if TYPE_CHECKING:
    from herald.rules.definition import RuleSet
    from herald.store.database import Database

db_app = typer.Typer(
    help="The database schema: `current` names its revision, `upgrade` migrates it to this "
    "version of Herald.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
messages_app = typer.Typer(
    help="Messages: `failed` lists dead letters (those that failed for good), `retry` "
    "re-queues them, `cancel` cancels a rule's waiting messages.",
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
        console.print(f"schema: {before or 'empty'} -> {current_revision(db)}")
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


@db_app.command("current")
def db_current(database: DatabaseOpt = None) -> None:
    """Say which schema revision the database is at, and what `herald db upgrade` would
    apply to it; changes nothing."""
    from herald.store.migrate import SchemaMismatch, current_revision, head_revision, pending_steps

    db = open_database(database_url_from(database), schema="any", writes=False)
    try:
        current = current_revision(db)
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


def _revision_left(db: Database) -> str:
    """The schema revision ``db`` is at, read again, as the operator is told it."""
    from herald.store.migrate import current_revision

    try:
        revision = current_revision(db)
    except Exception:  # unreachable meanwhile: the upgrade was rolled back all the same
        return "the revision it was at before"
    return f"revision {revision}" if revision else "no revision (empty)"


@messages_app.command("failed")
def messages_failed(
    limit: Annotated[
        int,
        typer.Option(
            min=1, max=10_000, metavar="N", help="how many to list, the latest to fail first"
        ),
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object a line, for scripts")
    ] = False,
    database: DatabaseOpt = None,
) -> None:
    """List dead letters (status failed), the latest to fail first, with their errors."""
    from herald.store.unit_of_work import ReadOnly

    db = open_database(database_url_from(database), schema="current", writes=False)
    with ReadOnly(db) as read:
        count, rows = read.outbox.dead_letters(limit)
    db.dispose()
    letters = [_dead_letter(row) for row in rows]
    if as_json:
        import orjson

        for letter in letters:
            typer.echo(orjson.dumps(letter).decode())
    else:
        for letter in letters:
            # Two lines each, whatever the terminal's width: the id whole, to be copied
            # into `messages retry`, then the error however long it is.
            typer.echo(
                f"{letter['message_id']}  {letter['rule']}  {letter['channel']}  "
                f"user {letter['user_id']}\n  failed at {letter['failed_at'] or 'an unknown time'}"
                f" after {letter['attempts']} attempt(s): {letter['error'] or 'no error recorded'}"
            )
    # The count and the hint go to stderr, beside the command's other messages, so that
    # the listing alone can be piped.
    said = f"{count} dead letter(s)"
    if len(rows) < count:
        said = f"the latest {len(rows)} of {said}"
    if count:
        said += "; `herald messages retry --message-id ID` (or `--failed`) re-queues them"
    console.print(said, markup=False)


def _dead_letter(row: Any) -> dict[str, Any]:
    from herald.domain.timeutil import from_micros, iso

    return {
        "message_id": row.message_id,
        "rule": row.rule,
        "user_id": row.user_id,
        "channel": row.channel,
        "attempts": row.attempts,
        "failed_at": iso(from_micros(row.failed_us)) if row.failed_us is not None else None,
        "error": row.last_error,
    }


@messages_app.command("retry")
def messages_retry(
    message_id: Annotated[
        str | None, typer.Option("--message-id", metavar="ID", help="one dead letter")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="every dead letter a prune has not redacted")
    ] = False,
    database: DatabaseOpt = None,
) -> None:
    """Put dead letters (status failed) back in the queue."""
    from herald.bootstrap import utc_now
    from herald.domain.timeutil import to_micros
    from herald.store.unit_of_work import UnitOfWork

    if (message_id is None) == (not failed):
        fail("give either --message-id ID or --failed", code=2)
    db = open_database(database_url_from(database), schema="current")
    try:
        with UnitOfWork(db) as uow:
            count = uow.outbox.requeue(now_us=to_micros(utc_now()), message_id=message_id)
            found = uow.outbox.get(message_id) if message_id and count == 0 else None
            # Said, or the metrics' count of dead letters would contradict "re-queued 0".
            left = 0 if message_id else uow.outbox.count_redacted_dead_letters()
            uow.commit()
    except KeyboardInterrupt:
        # Ctrl-C while it waits for a lock another process holds, say: said, or the
        # operator cannot tell whether the dead letters went back to the queue.
        fail(
            "interrupted before the re-queue was committed: nothing was re-queued; run "
            "the same command again",
            code=130,
        )
    finally:
        db.dispose()
    if message_id and count == 0:
        fail(_not_requeued(message_id, found))
    console.print(f"re-queued {count} message(s)")
    if left:
        console.print(
            f"left {left} dead letter(s) a prune redacted (no recipient or text left): they "
            "cannot be sent again"
        )


@messages_app.command("cancel")
def messages_cancel(
    rule: Annotated[
        str, typer.Option("--rule", metavar="RULE", help="the rule whose messages to cancel")
    ],
    database: DatabaseOpt = None,
) -> None:
    """Cancel a rule's messages waiting to be sent, and its dead letters.

    Those due, held for quiet hours or waiting for a retry: the messages of a rule taken
    out of the rule file would otherwise still go out, as written when decided. Those
    being sent are beyond recall, but one the receiver refuses comes back for a retry,
    which running this again cancels."""
    from herald.bootstrap import utc_now
    from herald.domain.timeutil import to_micros
    from herald.store.outbox import SENDING
    from herald.store.unit_of_work import UnitOfWork

    db = open_database(database_url_from(database), schema="current")
    try:
        with UnitOfWork(db) as uow:
            count = uow.outbox.cancel_rule(
                rule,
                reason=f"cancelled by `herald messages cancel --rule {rule}`",
                now_us=to_micros(utc_now()),
            )
            sending = uow.outbox.count_by_status(open_only=True, rule=rule).get(SENDING, 0)
            uow.commit()
    except KeyboardInterrupt:
        fail("interrupted before the cancel was committed: nothing was cancelled", code=130)
    finally:
        db.dispose()
    console.print(f"cancelled {count} message(s) of {rule}", markup=False)
    if sending:
        # Recorded as a retry, a send the receiver refused is waiting again, and would go
        # out later unless cancelled then: the operator must know to run this again.
        console.print(
            f"{sending} message(s) of {rule} being sent now are beyond recall; one the "
            "receiver refuses comes back for a retry, which the same command cancels once "
            "its send is recorded (within a minute)",
            markup=False,
        )


def _not_requeued(message_id: str, row: Any | None) -> str:
    """Why ``messages retry --message-id`` left ``message_id`` as it was: a mistyped id, a
    message that is no dead letter (sent, or waiting for its next attempt), or one pruned."""
    from herald.store.outbox import FAILED, PENDING, SENDING

    if row is None:
        return f"no message {message_id}"
    if row.status == FAILED:  # the only dead letters requeue leaves: those pruned
        return (
            f"message {message_id} is a dead letter a prune redacted (no recipient or text "
            "left): it cannot be sent again"
        )
    if row.status in (PENDING, SENDING):
        return (
            f"message {message_id} is {row.status}, not a dead letter: the dispatcher tries "
            "it again when it is due"
        )
    return f"message {message_id} is {row.status}, not a dead letter: nothing to retry"


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
    from herald.service.retention import history_fence, prune_history

    settings = settings_from(RuleFileSettings, database_url=database, rules=rules)
    try:
        ruleset = load_ruleset(settings.rules)
    except RuleFileError as exc:
        fail_on_rule_file(exc)
    # Deleting from a schema this version does not know could delete the wrong rows.
    db = open_database(settings.database_url, schema="current")
    # Whole seconds: the moment printed is the one applied.
    cutoff = (utc_now() - age).replace(microsecond=0)
    lifetime = ruleset.lifetime_rules() | _rules_not_in(ruleset, db, cutoff)
    fence = f"history_pruned_before {iso(history_fence(cutoff))} in their audit"
    if dry_run:
        _say_what_would_go(db, cutoff=cutoff, keep_rules=lifetime, fence=fence)
        return
    try:
        with terminating_as_interrupted():
            totals = prune_history(
                db,
                cutoff=cutoff,
                batch_size=batch_size,
                progress=lambda kind, n: console.print(
                    f"  {kind}: {n:,} {'redacted' if kind == 'redacted' else 'deleted'} so far"
                ),
                keep_rules=lifetime,
            )
    except KeyboardInterrupt as stopped:
        # Each batch is a transaction of its own: those counted above are done, the one
        # under way was rolled back, and the messages of pruned events still wait.
        fail(
            "interrupted: the batches counted above are pruned and stay so; run the same "
            "command again to prune the rest (and the finished messages of those events)",
            code=143 if isinstance(stopped, Terminated) else 130,  # 128 + the signal
        )
    finally:
        db.dispose()
    console.print(
        f"pruned {_counted(totals.events, 'event')} and {_counted(totals.messages, 'message')} "
        f"from before {iso(cutoff)}; redacted {_counted(totals.redacted, 'message')} "
        "kept for their once-per-user limits"
    )
    if totals.events:
        # The end of the cutoff's UTC day, not the cutoff: what the rules go by from now on.
        console.print(f"users whose events were pruned: {fence}")


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


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
        f"would prune {_counted(totals.events, 'event')} and "
        f"{_counted(totals.messages, 'message')} from before {iso(cutoff)}; would redact "
        f"{_counted(totals.redacted, 'message')} kept for their once-per-user limits (dry "
        "run: nothing changed)"
    )
    if totals.events:
        console.print(f"users whose events would be pruned: {fence}")
