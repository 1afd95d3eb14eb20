"""Opening the database a command names, or exiting with one line that says why it cannot:
a bad URL, a missing or unopenable SQLite file, a schema this version cannot run on, a
database that refuses writes, or Ctrl-C while it keeps the command waiting; and exiting
so when the database cannot take a command's write once opened."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

from herald.cli.output import fail

if TYPE_CHECKING:
    from herald.store.database import Database


def open_database(
    url: str,
    *,
    schema: Literal["any", "current", "upgrade"],
    create: bool = False,
    writes: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Database:
    """The database at ``url``, or exit 1 with one line: a bad URL, an unreachable server,
    a SQLite file that does not exist (unless ``create``, which creates it readable by its
    owner alone), a schema this version cannot run on, or a database that refuses writes.
    ``schema``: ``"current"`` requires the schema to be current, ``"upgrade"`` upgrades a
    SQLite database first, ``"any"`` only checks that the database answers (neither its
    schema nor its writes). ``writes=False``: the command only reads, and may run on a
    read-only database (a PostgreSQL replica)."""
    from herald.store.database import Database, write_problem
    from herald.store.database_url import DatabaseUrlError
    from herald.store.migrate import SchemaMismatch, current_revision, ensure_current

    try:
        database = Database(url)
    except DatabaseUrlError as exc:
        fail(str(exc))
    path = database.sqlite_path
    if path is not None and not create and not path.exists():
        # Opening it would create an empty file beside the real one, e.g. in the folder
        # a maintenance command happened to be run from.
        database.dispose()
        fail(
            f"no SQLite database at {path.resolve()}: name Herald's database with --database "
            "or HERALD_DATABASE_URL (`herald db upgrade` creates a new one)"
        )
    if path is not None and not path.exists():
        _create_private(path)
    try:
        if schema == "any":
            current_revision(database)
        else:
            upgrade = schema == "upgrade" and database.is_sqlite
            ensure_current(database, auto_upgrade=upgrade, progress=progress)
    except SchemaMismatch as exc:
        database.dispose()
        fail(str(exc))
    except KeyboardInterrupt:
        # Ctrl-C while the database keeps the command waiting (a lock another process
        # holds, a server slow to answer): said, or the operator cannot tell what it did.
        _interrupted_opening(database, upgrading=schema == "upgrade")
    except Exception as exc:
        database.dispose()
        _cannot_open(exc, path, reading=not writes)
    # A command that writes must not start on a read-only database: a server would say
    # it is ready, and then refuse every event.
    try:
        refused = None if schema == "any" or not writes else write_problem(database)
    except KeyboardInterrupt:
        _interrupted_opening(database, upgrading=schema == "upgrade")
    if refused is not None:
        database.dispose()
        _refuses_writes(refused, path)
    return database


def _cannot_open(exc: Exception, path: Path | None, *, reading: bool) -> NoReturn:
    """Exit 1 with one line saying why the database (at ``path``, for SQLite) could not be
    opened: what the driver said, with the file and the likely cause where SQLite's own
    words name neither. ``reading``: the command only reads."""
    from herald.observability.logging import database_said

    said = database_said(exc)
    if "readonly" in said and reading and path is not None:
        # "Refuses writes" of a command that writes nothing: SQLite reads a database in WAL
        # mode through the -wal and -shm files beside it, even to read.
        fail(
            f"SQLite cannot read {path.resolve()} without its -wal and -shm files, which "
            f"this user may not create in {path.parent.resolve()}: run as the user who owns "
            "the database, or let this one write to its folder"
        )
    if "readonly" in said:  # SQLite in a folder it cannot write its log to
        _refuses_writes(said, path)
    if path is not None and "unable to open" in said:  # SQLite's SQLITE_CANTOPEN
        fail(f"cannot open the SQLite database {path.resolve()}: {_why_unopenable(path)}")
    if path is not None and "not a database" in said:  # SQLite's SQLITE_NOTADB
        fail(
            f"{path.resolve()} is not an SQLite database: name Herald's database with "
            "--database or HERALD_DATABASE_URL"
        )
    if path is None:  # PostgreSQL: the server may have answered, refusing what was asked
        _refused_by_postgres(exc, said)
    fail(f"cannot reach the database: {type(exc).__name__}: {said}")


# What a PostgreSQL server says as it refuses a login (after "FATAL:"): psycopg gives
# these connection failures no SQLSTATE.
_LOGIN_REFUSED = re.compile(
    r'FATAL:\s+((?:role ".*" (?:does not exist|is not permitted to log in)'
    r"|.*authentication failed|no pg_hba\.conf entry).*)"
)
_INSUFFICIENT_PRIVILEGE = "42501"
# What libpq (or the server, of `options`) says of a parameter of the URL it cannot take.
_BAD_PARAMETER = re.compile(r"invalid (?:connection option|\w+ value|value for parameter)\b.*")


def _refused_by_postgres(exc: Exception, said: str) -> None:
    """Exit 1 when a PostgreSQL server answered and refused (no such database, a login
    refused, a role without rights on Herald's tables), or libpq refused a parameter of
    the URL: "cannot reach the database" would send an operator looking for a network
    problem. Otherwise return."""
    parameter = _BAD_PARAMETER.search(said)
    if parameter:
        fail(
            f"a parameter of the database URL is wrong: {parameter.group(0)}: correct it in the URL"
        )
    missing = re.search(r'database "(.+)" does not exist', said)
    if missing:
        name = missing.group(1)
        fail(
            f"the PostgreSQL server has no database {name!r}: check the name in the URL; "
            f"Herald creates its tables but not the database, so create a new one first "
            f"(`createdb {name}`, or CREATE DATABASE), then run `herald db upgrade --database URL`"
        )
    login = _LOGIN_REFUSED.search(said)
    if login:
        refusal = " ".join(login.group(1).split())
        fail(
            f"the PostgreSQL server refused the connection: {refusal}: check the user and "
            "password in the URL"
        )
    if str(getattr(getattr(exc, "orig", None), "sqlstate", "")) == _INSUFFICIENT_PRIVILEGE:
        fail(
            f"the database refused the role access: {said}: connect as the role Herald's "
            "tables belong to, or grant this one access to them"
        )


@contextmanager
def one_write(database: Database, *, interrupted: str, left: str) -> Iterator[None]:
    """The block holding a command's one transaction on ``database``, disposed of after
    it. Ctrl-C meanwhile exits 130 saying ``interrupted``; a database that cannot take
    the write exits 1 as ``fail_if_unavailable`` says it, with ``left``; any other error
    is raised whole."""
    try:
        yield
    except KeyboardInterrupt:
        # While it waits for a lock another process holds, say: said, or the operator
        # cannot tell whether the change was made.
        fail(interrupted, code=130)
    except Exception as exc:
        fail_if_unavailable(exc, left=left)
        raise
    finally:
        database.dispose()


def fail_if_unavailable(exc: BaseException, *, left: str) -> None:
    """Exit 1 with one line when ``exc`` says the database cannot take the command's write
    now (SQLite's write lock held by another process for the whole wait, a server gone),
    saying what that ``left``. Any other error returns, for the caller to raise again: a
    bug, shown whole."""
    from herald.observability.logging import database_said
    from herald.store import sqlite_connections
    from herald.store.database_errors import unavailable

    if not unavailable(exc):
        return
    said = database_said(exc)
    if "locked" in said:
        waited = sqlite_connections.SQLITE_BUSY_TIMEOUT_MS / 1000
        said = (
            f"another process held SQLite's write lock for the {waited:g} s this command "
            "waits for it (a prune, a shell left in a write transaction)"
        )
    else:
        said = f"the database could not take the command's write: {said}"
    fail(f"{said}: {left}")


def _interrupted_opening(database: Database, *, upgrading: bool) -> NoReturn:
    """Exit 130 on Ctrl-C while the database kept the command waiting (a lock another
    process holds, a server slow to answer), saying what it left: when it upgrades the
    schema by itself, the revision it is at (an upgrade under way is rolled back whole,
    one done stays), else nothing was changed."""
    left = "nothing was changed"
    if upgrading and database.is_sqlite:
        from herald.store.migrate import current_revision

        try:
            left = f"the schema is at revision {current_revision(database) or 'none (empty)'}"
        except Exception:  # still unreadable: an upgrade under way was rolled back
            left = "the schema is where it was"
    database.dispose()
    fail(
        "interrupted while opening the database (waiting for it to answer, or for a lock "
        f"another process holds, or upgrading its schema): {left}",
        code=130,
    )


def _create_private(path: Path) -> None:
    """An empty SQLite file that only its owner may read: it will hold the audit's personal
    data, and SQLite, left to create it, follows the umask (often readable by every user).
    Its log files take the same permissions. An existing file is left as it is."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # another process created it meanwhile
        pass
    except OSError:  # a read-only folder: opening the database says so, in its words
        pass


def _why_unopenable(path: Path) -> str:
    """Why SQLite could not open (or create) ``path``, with what to do: its bare "unable to
    open database file" names neither the file nor the cause, which is almost always a
    command run as another user than the one who owns the database."""
    if path.is_dir():
        return "it is a folder; name a file in it"
    if not path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return (
                f"this user may not create files in its folder {path.parent.resolve()}: run "
                "as the user who owns that folder, or let this one write to it"
            )
        return "SQLite could not create it"
    if not os.access(path, os.R_OK):
        return "this user may not read it: run as the user who owns it, or give this one access"
    if not os.access(path.parent, os.X_OK):
        return f"this user may not enter its folder {path.parent.resolve()}"
    return "SQLite could not open it"


def _refuses_writes(said: str, sqlite_path: Path | None) -> NoReturn:
    if sqlite_path is not None:
        fail(
            f"the database refuses writes: {said} ({sqlite_path.resolve()} and its folder "
            "must be writable)"
        )
    # PostgreSQL's words name no cause: the usual one is a URL a failover left on a standby.
    fail(
        f"the database refuses writes: {said} (a standby, or a server, database or role set "
        "default_transaction_read_only): name the primary in the URL, or make it take writes"
    )
