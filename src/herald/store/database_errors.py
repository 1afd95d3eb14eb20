"""Reading a database's errors: what the driver said, and whether it says the database
cannot serve now rather than that a statement is wrong."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATE classes of an unavailable PostgreSQL: connection exception, insufficient
# resources, operator intervention (a shutdown, a restart, a statement cancelled by the
# statement timeout).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")
# A server that takes no writes now: a standby, the old primary of a failover the URL
# still reaches, one set read-only for maintenance (read_only_sql_transaction), as a
# read-only SQLite file is.
_READ_ONLY_SQLSTATE = "25006"
# PostgreSQL cancelling a statement that waited too long: the statement timeout (or an
# operator's cancel), or a lock timeout.
_GAVE_UP_SQLSTATES = ("57014", "55P03")
# What SQLite says when it cannot write now, rather than of a statement that is wrong.
_SQLITE_UNAVAILABLE = ("locked", "busy", "readonly", "disk i/o", "disk is full", "unable to open")


def takes_no_writes(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL refusing a write because the session is read-only
    (a standby, a server or database set read-only)."""
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlstate", "")) == _READ_ONLY_SQLSTATE


def gave_up_waiting(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL cancelling a statement that ran past its statement or
    lock timeout: most often one waiting on a lock another session holds."""
    return str(getattr(getattr(exc, "orig", None), "sqlstate", "")) in _GAVE_UP_SQLSTATES


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot serve now (down, unreachable, locked,
    read-only, a standby, out of room, every pooled connection busy for the pool's whole timeout),
    as opposed to a statement that is wrong whenever it runs."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:
        code = str(sqlstate)
        return code[:2] in _UNAVAILABLE_SQLSTATES or code == _READ_ONLY_SQLSTATE
    said = str(exc.orig).lower()
    # psycopg raises a connection failure with no SQLSTATE: the server never answered.
    return "connection" in said or any(word in said for word in _SQLITE_UNAVAILABLE)
