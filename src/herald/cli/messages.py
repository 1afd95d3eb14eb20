"""The ``herald messages`` commands: list dead letters, re-queue them, cancel a rule's
messages not yet sent."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from herald.cli.database_opening import one_write, open_database
from herald.cli.options import DatabaseOpt, database_url_from
from herald.cli.output import fail
from herald.observability.operator_lines import console

messages_app = typer.Typer(
    help="Messages: `failed` lists dead letters (those that failed for good), `retry` "
    "re-queues them, `cancel` cancels a rule's messages not yet sent.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


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
        from herald.json_lines import shown_json_line

        for letter in letters:
            typer.echo(shown_json_line(letter))
    else:
        from herald.observability.escapes import escaped

        for letter in letters:
            # Two lines each, whatever the terminal's width: the id whole, to be copied
            # into `messages retry`, then the error however long it is. The client's ids
            # and the receiver's words escaped: a control character in an error quoting
            # a receiver's answer would reach the terminal, a line break split the entry.
            user, error = escaped(letter["user_id"]), escaped(letter["error"] or "")
            typer.echo(
                f"{letter['message_id']}  {letter['rule']}  {letter['channel']}  "
                f"user {user}\n  failed at {letter['failed_at'] or 'an unknown time'}"
                f" after {letter['attempts']} attempt(s): {error or 'no error recorded'}"
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
    from herald.service.outbox_changes import requeue_dead_letters

    if (message_id is None) == (not failed):
        fail("give either --message-id ID or --failed", code=2)
    if message_id is not None and not message_id.strip():
        # Likely a script's variable left unset: "re-queued 0" would read as done.
        fail(
            "--message-id needs the id of a dead letter, as `herald messages failed` lists it",
            code=2,
        )
    db = open_database(database_url_from(database), schema="current")
    with one_write(
        db,
        interrupted="interrupted before the re-queue was committed: nothing was re-queued; "
        "run the same command again",
        left="nothing was re-queued; run the same command again",
    ):
        done = requeue_dead_letters(db, now=utc_now(), message_id=message_id)
    if message_id and done.count == 0:
        fail(_not_requeued(message_id, done.row))
    console.print(f"re-queued {done.count} message(s)")
    # Said, or the metrics' count of dead letters would contradict "re-queued 0".
    if done.redacted_left:
        console.print(
            f"left {done.redacted_left} dead letter(s) a prune redacted (no recipient or "
            "text left): they cannot be sent again"
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
    being sent now are cancelled when their attempt ends, unless it is sent (a message
    sent is beyond recall): one the receiver refuses, or whose dispatcher gives it back
    or stops before recording it, is not tried again."""
    from herald.bootstrap import utc_now
    from herald.service.outbox_changes import cancel_rule_messages

    db = open_database(database_url_from(database), schema="current")
    with one_write(
        db,
        interrupted="interrupted before the cancel was committed: nothing was cancelled",
        left="nothing was cancelled; run the same command again",
    ):
        done = cancel_rule_messages(
            db, rule, now=utc_now(), how=f"herald messages cancel --rule {rule}"
        )
    console.print(f"cancelled {done.cancelled} message(s) of {rule}", markup=False)
    if not done.cancelled and not done.in_flight:
        others = done.others
        listed = ", ".join(f"{name} ({others[name]})" for name in sorted(others))
        said = (
            f"no message of {rule} was waiting to be sent or a dead letter"
            if done.known
            else f"no message of {rule} was ever stored (rule ids are case-sensitive)"
        )
        console.print(
            f"{said}; " + (f"rules that have some: {listed}" if others else "no rule has any"),
            markup=False,
        )
        if not done.known:
            # Likely a mistyped id: a script must not take it for the rule's messages gone.
            raise typer.Exit(1)
    if done.in_flight:
        console.print(
            f"{done.in_flight} message(s) of {rule} being sent now will be cancelled when "
            "their attempt ends, unless they are sent: a send that succeeds is beyond recall",
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
