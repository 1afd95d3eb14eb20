"""``herald db backup``: a consistent copy of a running SQLite database."""

from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from herald.cli.database_opening import open_database
from herald.cli.interrupts import Terminated, interrupts_deferred, terminating_as_interrupted
from herald.cli.options import DatabaseOpt, database_url_from
from herald.cli.output import counted, fail
from herald.observability.operator_lines import console

if TYPE_CHECKING:
    from herald.store.database import Database
    from herald.store.snapshot import Snapshot, SnapshotContents

# A copy that takes longer than this says how far it got, and again at each interval.
_QUIET_FOR_S = 2.0
_PROGRESS_EVERY_S = 5.0
# The files SQLite keeps beside a database: replacing one with a copy would corrupt it.
_BESIDE = ("-wal", "-shm", "-journal")


def db_backup(
    # Taken as given: a Path drops the final "/" that says the operator named a folder.
    dest: Annotated[
        str,
        typer.Argument(metavar="DEST", help="the file to write the copy to", show_default=False),
    ],
    database: DatabaseOpt = None,
    force: Annotated[bool, typer.Option("--force", help="replace DEST if it exists")] = False,
) -> None:
    """Copy the SQLite database to DEST while Herald goes on serving, as it was when the
    copy began, then check the copy; on PostgreSQL, use `pg_dump` instead.

    The copy is written beside DEST and renamed to DEST once it is complete, flushed to
    disk and checked: an interrupted backup leaves no DEST behind."""
    from herald.store.database_url import DatabaseUrlError, normalise_url

    url = database_url_from(database)
    try:
        normalised = normalise_url(url)
    except DatabaseUrlError as exc:
        fail(str(exc))
    if normalised.get_backend_name() == "postgresql":
        _refer_to_pg_dump(url)
    checked = _checked_destination(dest, force=force)
    db = open_database(url, schema="any", writes=False)
    try:
        _back_up(db, checked, force=force)
    finally:
        db.dispose()


def _back_up(db: Database, dest: Path, *, force: bool) -> None:
    from herald.store.migrate import current_revision
    from herald.store.snapshot import Snapshot, SnapshotFailed, estimated_size

    assert db.sqlite_path is not None
    source = db.sqlite_path.resolve()
    if dest.resolve() in {source, *(source.with_name(source.name + s) for s in _BESIDE)}:
        fail(f"{dest} is the database's own file: name another one")
    revision = current_revision(db)
    if revision is None:
        fail(f"{source} holds no Herald schema: there is nothing to back up")
    started = time.monotonic()
    # Every way out below removes the temporary copy, the copy placed as DEST or not: a
    # signal that came between its creation and the ``try`` (SIGTERM killed the process
    # there) left it behind, a hidden file as large as the database, each time.
    temporary: Path | None = None
    copy_inode: int | None = None
    snapshot: Snapshot | None = None
    with terminating_as_interrupted():
        try:
            with interrupts_deferred():
                temporary = _temporary_beside(dest)
            copy_inode = temporary.stat().st_ino
            snapshot = Snapshot(db, temporary)
            snapshot.start()
            _wait_saying_progress(snapshot, estimated_size(db), started)
            contents = snapshot.contents()
            if contents.revision != revision:
                raise SnapshotFailed(
                    f"the copy is at schema revision {contents.revision}, the database at "
                    f"{revision} (was it upgraded meanwhile?)"
                )
            _flush(temporary)
            _move_into_place(temporary, dest, force=force)
        except KeyboardInterrupt as stopped:
            if snapshot is not None:
                snapshot.interrupt()
            # Stopped as the copy was being renamed: it may be in place already.
            placed = dest.exists() and dest.stat().st_ino == copy_inode
            left = f"{dest} is complete" if placed else "nothing was written"
            fail(f"interrupted: {left}", code=143 if isinstance(stopped, Terminated) else 130)
        except (SnapshotFailed, OSError) as exc:  # OSError: flushing or renaming the copy
            fail(f"the backup failed, and nothing was written: {exc}")
        finally:
            if temporary is not None:  # once renamed, no file has its name: nothing to do
                with interrupts_deferred():
                    _remove(temporary)
    _say_written(source, dest, contents, time.monotonic() - started)


def _checked_destination(given: str, *, force: bool) -> Path:
    """``given`` as an absolute path, once it is known to be a file the copy may take the
    place of; otherwise exit 1 saying why, before anything is copied."""
    dest = Path(given).absolute()
    if dest.is_dir():
        fail(f"{dest} is a folder: name a file in it")
    if given.endswith(("/", os.sep)):
        # A folder that does not exist (not created yet, a volume not mounted): the copy
        # would take its name as a file.
        fail(f"the folder {dest} does not exist: create it, or correct the path")
    if not dest.parent.is_dir():
        fail(f"the folder {dest.parent} does not exist: create it, or correct the path")
    if dest.exists() and not force:
        fail(f"{dest} exists: name another file, or replace it with --force")
    if dest.exists() and not dest.is_file():  # /dev/null, a pipe: --force would replace it
        fail(f"{dest} is not a regular file (a device or a pipe): name a file")
    return dest


def _temporary_beside(dest: Path) -> Path:
    """A new empty file in ``dest``'s folder, readable by its owner alone (the copy holds
    the audit's personal data), to write the copy to: renamed, it becomes ``dest`` at once."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    except OSError as exc:
        fail(f"cannot write to the folder {dest.parent}: {exc.strerror}")
    os.close(handle)
    return Path(name)


def _wait_saying_progress(snapshot: Snapshot, expected: int, started: float) -> None:
    """Wait for ``snapshot``, saying how far it got once it has run for a while."""
    said_at = started + _QUIET_FOR_S - _PROGRESS_EVERY_S
    while not snapshot.wait(0.1):
        now = time.monotonic()
        if now - said_at < _PROGRESS_EVERY_S:
            continue
        said_at = now
        if snapshot.phase == "copying":
            done = f"{_megabytes(snapshot.written_bytes())} of about {_megabytes(expected)}"
            console.print(f"  copying: {done} written ({now - started:.0f} s)")
        else:
            console.print(f"  checking the copy ({now - started:.0f} s)")


def _flush(path: Path) -> None:
    """Put the copy on disk: SQLite does not flush what ``VACUUM INTO`` writes."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _move_into_place(temporary: Path, dest: Path, *, force: bool) -> None:
    """Name the finished copy ``dest``, in one step; without ``force``, never over a file
    that appeared there meanwhile."""
    from herald.store.snapshot import SnapshotFailed

    if force:
        os.replace(temporary, dest)
    else:
        try:
            os.link(temporary, dest)  # fails, rather than replaces, if dest exists
        except FileExistsError:
            raise SnapshotFailed(f"{dest} was created meanwhile; it is left as it was") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            if dest.exists():  # a file system without hard links
                raise SnapshotFailed(
                    f"{dest} was created meanwhile; it is left as it was"
                ) from None
            os.replace(temporary, dest)
        _remove(temporary)
    # The rename itself survives a power cut once the folder is on disk too.
    folder = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _remove(path: Path) -> None:
    """Remove a partial copy and the journal SQLite may have left beside it."""
    for leftover in (path, path.with_name(path.name + "-journal")):
        leftover.unlink(missing_ok=True)


def _say_written(source: Path, dest: Path, contents: SnapshotContents, took_s: float) -> None:
    typer.echo(
        f"backed up {source} to {dest}: {_megabytes(dest.stat().st_size)}, schema revision "
        f"{contents.revision}, {counted(contents.events, 'event')} and "
        f"{counted(contents.messages, 'message')}, in {took_s:.1f} s (checked: quick_check ok)"
    )


def _megabytes(count: int) -> str:
    return f"{count / 1_000_000:,.1f} MB"


def _refer_to_pg_dump(url: str) -> NoReturn:
    """Exit 1 naming ``pg_dump``, with a command line for this database (its password left
    out: pg_dump asks for it, or reads PGPASSWORD or ~/.pgpass)."""
    from sqlalchemy.engine import URL, make_url

    given = make_url(url)
    shown = URL.create(  # ``URL.set`` cannot take a password away
        "postgresql",
        username=given.username,
        host=given.host,
        port=given.port,
        database=given.database,
        query={k: v for k, v in given.query.items() if k != "password"},
    )
    fail(
        "herald db backup copies SQLite databases; back PostgreSQL up with its own tools, "
        "e.g. `pg_dump --format=custom --file=herald.dump "
        f"'{shown.render_as_string(hide_password=False)}'` (and `pg_restore` to restore): "
        "nothing was done"
    )
