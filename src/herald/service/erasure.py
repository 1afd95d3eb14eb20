"""Forgetting a user at their request (the right to erasure): one transaction, so that
ingestion for the user waits for it and then finds nothing of theirs but their limits."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from herald.delivery.providers.stub_file import erase_user
from herald.domain.timeutil import iso, to_micros
from herald.store.checkpoints import empty_write_ahead_log
from herald.store.database import Database
from herald.store.erasure import Forgotten
from herald.store.unit_of_work import ReadOnly, UnitOfWork

log = logging.getLogger(__name__)


class SendsNotRemoved(Exception):
    """The user was forgotten in the database, committed, but their sends could not be
    removed from the stub provider's file at ``path``: ``problem`` says why (it is a
    FIFO, a folder, unreadable). Forgetting the user again once the file is fixed
    removes them; ``forgotten`` is what the database's part did."""

    def __init__(self, forgotten: Forgotten, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.forgotten = forgotten
        self.path = path
        self.problem = problem


def forget_user(
    database: Database,
    user_id: str,
    *,
    now: datetime,
    how: str,
    stub_file: Path | None = None,
    dry_run: bool = False,
) -> Forgotten | None:
    """Delete what Herald holds of the user (events, traits, delivery attempts, and their
    sends in the stub provider's ``stub_file``) and redact their messages, cancelling
    those not yet sent; ``how`` (the command or request) is named in the cancelled
    messages' reason. None for a user Herald has never seen. ``dry_run``: say what it
    would do, changing nothing. Raises ``SendsNotRemoved`` when the database's part is
    committed but the stub's file could not be rewritten, and ``OSError`` when a dry run
    cannot read it."""
    if dry_run:
        with ReadOnly(database) as read:
            found = read.erasure.count(user_id) if read.erasure.exists(user_id) else None
        if found is None or stub_file is None:
            return found
        return found._replace(outbox_lines=erase_user(stub_file, user_id, dry_run=True))
    done = _forget_in_database(database, user_id, now=now, how=how)
    if done is None or stub_file is None:
        return done
    # After the commit: a send the stub records meanwhile is of a message the erasure
    # found being sent, which forgetting the user again removes, as its attempt.
    try:
        return done._replace(outbox_lines=erase_user(stub_file, user_id))
    except OSError as exc:  # the path swapped for a FIFO or a folder since the start
        raise SendsNotRemoved(done, stub_file, exc.strerror or str(exc)) from exc


def _forget_in_database(
    database: Database, user_id: str, *, now: datetime, how: str
) -> Forgotten | None:
    with UnitOfWork(database) as uow:
        uow.lock([user_id])  # as ingestion does: its events for the user wait, then see this
        if not uow.erasure.exists(user_id):
            return None
        done = uow.erasure.forget(
            user_id, reason=f"the user was forgotten at {iso(now)} ({how})", now_us=to_micros(now)
        )
        uow.commit()
    if not empty_write_ahead_log(database):
        log.warning(
            "user %s was forgotten, but readers kept SQLite's write-ahead log (%s-wal) from "
            "being emptied: it may still hold earlier copies of their data until it is "
            "written over; run `herald users forget` for them again to empty it",
            user_id,
            database.sqlite_path,
        )
    return done
