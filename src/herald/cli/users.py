"""The ``herald users`` commands: what Herald sent a user and why (``audit``), and
forgetting a user at their request (``forget``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.database_opening import one_write, open_database
from herald.cli.options import DatabaseOpt, database_url_from, settings_from
from herald.cli.output import counted, fail
from herald.observability.operator_lines import console

if TYPE_CHECKING:
    from herald.store.erasure import Forgotten

users_app = typer.Typer(
    help="Users: `audit` explains what Herald sent a user and why; `forget` deletes what "
    "Herald holds of a user, at their request.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


@users_app.command("audit")
def users_audit(
    user_id: Annotated[str, typer.Argument(metavar="USER_ID", help="the user to explain")],
    limit: Annotated[
        int, typer.Option(min=1, max=1000, metavar="N", help="events on the page at most")
    ] = 100,
    cursor: Annotated[
        str | None, typer.Option(metavar="CURSOR", help="next_cursor of the previous page")
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Write a page of the user's audit as `GET /audit/{user_id}` answers it, as JSON on
    one line: their profile, their events newest first with each decision and its
    reason, and the messages those events created or name, with every delivery attempt.

    Reads only, so it runs with the server down or on a read-only database; stderr says
    how many events and messages the page holds, and the `--cursor` of the next page."""
    from herald.json_lines import shown_json_line
    from herald.service.audit import BadCursor, user_audit

    db = open_database(database_url_from(database), schema="current", writes=False)
    try:
        page = user_audit(db, user_id, limit=limit, cursor=cursor)
    except BadCursor as exc:
        fail(str(exc))
    finally:
        db.dispose()
    if page is None:
        fail(f"no user {user_id!r} in the database")
    typer.echo(shown_json_line(page))
    more = page["next_cursor"]
    console.print(
        f"{counted(len(page['events']), 'event')} and {counted(len(page['messages']), 'message')}"
        + (f"; next page: --cursor {more}" if more else "; the last page"),
        markup=False,
    )


@users_app.command("forget")
def users_forget(
    user_id: Annotated[str, typer.Argument(metavar="USER_ID", help="the user to forget")],
    database: DatabaseOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would go, and change nothing")
    ] = False,
) -> None:
    """Forget a user: delete their events, traits and delivery attempts, and redact their
    messages (recipient and texts), in one transaction.

    Their messages not yet sent are cancelled. The message rows stay, without personal
    data, because they hold the user's limits (a replayed signup sends no second welcome
    email), and so do the user's id and unsubscribes. An event of theirs sent again
    afterwards is stored without its properties and traits, and no rule acts on one
    dated before this. Copies outside the
    database are not touched (the logs, what providers received), except the stub
    provider's file (`HERALD_OUTBOX_FILE`, else `outbox.jsonl` beside the database), from
    which their sends are removed."""
    from herald.bootstrap import outbox_path, utc_now
    from herald.config import StubFileSettings
    from herald.service.erasure import SendsNotRemoved, forget_user

    settings = settings_from(StubFileSettings, database_url=database)
    # A dry run only reads: it may count on a standby or a read-only file.
    db = open_database(settings.database_url, schema="current", writes=not dry_run)
    unreadable = _stub_file_problem(outbox_path(settings))
    if unreadable:
        db.dispose()
        fail(unreadable)
    with one_write(
        db,
        interrupted="interrupted before the user was forgotten: nothing was changed",
        left="nothing was changed; run the same command again",
    ):
        try:
            done = forget_user(
                db,
                user_id,
                now=utc_now(),
                how="herald users forget",
                stub_file=outbox_path(settings),
                dry_run=dry_run,
            )
        except SendsNotRemoved as exc:  # the stub's file, rewritten after the commit
            fail(
                f"the user's sends could not be removed from {exc.path}: {exc.problem}; "
                "the database's part is done: run this again"
            )
        except OSError as exc:  # the stub's file, read by a dry run
            fail(f"the user's sends could not be removed from {exc.filename}: {exc.strerror}")
    if done is None:
        fail(f"no user {user_id!r} in the database: nothing to forget")
    _say_forgotten(done, user_id, dry_run=dry_run, stub_file=outbox_path(settings))


def _stub_file_problem(path: Path) -> str | None:
    """Why the stub provider's file is there but cannot be read (a folder, another user's
    file), found before the database is changed: read after the erasure's commit, it
    failed the command with the user forgotten in the database alone, and running it
    again failed the same way."""
    from herald.delivery.providers.stub_file import open_to_read

    try:
        with open_to_read(path):  # opened only to learn that it can be
            pass
    except FileNotFoundError:  # nothing sent through the stub yet: nothing to remove
        return None
    except OSError as exc:
        return (
            f"cannot read the stub provider's file {path}: {exc.strerror}: nothing was "
            "changed; set HERALD_OUTBOX_FILE to the file the server writes, or unset it"
        )
    return None


def _say_forgotten(done: Forgotten, user_id: str, *, dry_run: bool, stub_file: Path) -> None:
    """What ``herald users forget`` deleted, redacted and cancelled (or would have, in a
    dry run), and what it could not yet reach."""
    delete, redact, cancel = (
        ("would delete", "would redact", "would cancel")
        if dry_run
        else ("deleted", "redacted", "cancelled")
    )
    console.print(
        f"{delete} {counted(done.events, 'event')}, {counted(done.traits, 'trait')} and "
        f"{counted(done.attempts, 'delivery attempt')} of user {user_id!r}; {redact} "
        f"{counted(done.messages, 'message')}"
        + (f" and {cancel} the {done.cancelled} of them not sent yet" if done.cancelled else "")
        + (" (dry run: nothing changed)" if dry_run else ""),
        markup=False,
    )
    if done.outbox_lines:
        console.print(
            f"{'would remove' if dry_run else 'removed'} "
            f"{counted(done.outbox_lines, 'send')} of theirs from the stub provider's file "
            f"{stub_file}",
            markup=False,
        )
    if done.in_flight:
        console.print(
            f"{counted(done.in_flight, 'message')} being sent now: cancelled when the attempt "
            "ends, unless sent; the attempt's record is written then, so run this again "
            "afterwards to delete it",
            markup=False,
        )
