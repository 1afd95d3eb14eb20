"""Reading a database URL as Herald accepts it, and showing it with its password hidden."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from herald.observability.masking import hide_url_passwords

_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=)[^&\s]*")


class DatabaseUrlError(ValueError):
    pass


def hide_password(raw: str) -> str:
    """The database URL ``raw`` as a person may see it: its password, if any, is ``***``."""
    try:
        shown = make_url(raw).render_as_string(hide_password=True)
    except Exception:
        shown = raw  # not a URL SQLAlchemy reads: what looks like a password still goes
    # SQLAlchemy ends a password at its first "@": one typed with an "@" goes whole.
    # libpq also takes the password as a parameter, which SQLAlchemy shows as it is.
    return _QUERY_PASSWORD.sub("***", hide_url_passwords(shown))


def shown_url(raw: str) -> str:
    """The database URL ``raw`` as an operator's line names it: its password hidden (see
    ``hide_password``), and an SQLite file's relative path made absolute, as the process
    opens it from its working folder: ``sqlite:///./herald.db`` in a log read later, or
    from another folder, would not say which file it was."""
    try:
        url = make_url(raw)
    except Exception:  # refused where it is opened, with its own message
        return hide_password(raw)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        if not path.is_absolute():
            raw = url.set(database=str(path.resolve())).render_as_string(hide_password=False)
    return hide_password(raw)


def normalise_url(raw: str) -> URL:
    """Accept ``sqlite:///file.db`` and ``postgresql://...`` (psycopg 3 is the driver), or
    ``postgres://...`` as many hosts hand PostgreSQL's URLs out."""
    if "://" not in raw:
        # A file's path given as it is (`--database herald.db`): SQLAlchemy's own words,
        # "Could not parse SQLAlchemy URL", do not say what a URL would be.
        raise DatabaseUrlError(
            f"not a database URL: {hide_password(raw)!r}: name an SQLite file as "
            f"sqlite:///{raw} (three slashes before a relative path, four before an absolute "
            "one) and PostgreSQL as postgresql://user@host/database"
        )
    try:
        url = make_url(raw)
    except Exception as exc:
        # Some SQLAlchemy versions quote the whole URL in their message.
        reason = str(exc).replace(raw, hide_password(raw))
        raise DatabaseUrlError(f"not a database URL: {hide_password(raw)!r} ({reason})") from None
    if url.drivername == "postgres":
        url = url.set(drivername="postgresql")
    if url.get_backend_name() == "postgresql":
        # A password's first "@" ends it, and the rest would be looked up as the host:
        # libpq's "failed to resolve host" error would then show the rest of the password.
        if url.host is not None and "@" in url.host:
            raise DatabaseUrlError(
                f"the database URL {hide_password(raw)!r} holds an '@' in its password: "
                "write each '@' of the password as %40 (and each '%' as %25)"
            )
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        if url.host or url.username or url.password or url.port:
            # Two slashes, `sqlite://./herald.db`: the path's start is read as a host,
            # which SQLite has none of (SQLAlchemy refused it with a traceback).
            raise DatabaseUrlError(
                f"not an SQLite URL: {hide_password(raw)!r}: SQLite has no host, so its URL "
                "has three slashes before a relative path (sqlite:///./herald.db) and four "
                "before an absolute one (sqlite:////srv/herald/herald.db)"
            )
        if not url.database or url.database == ":memory:":
            raise DatabaseUrlError(
                "an in-memory SQLite database would lose every event; use a file, "
                "e.g. sqlite:///./herald.db"
            )
        if url.query:
            # SQLAlchemy hands them to the driver: a bad value failed with a traceback, and
            # `mode=ro` was ignored with a warning, the file opened for writing all the same.
            raise DatabaseUrlError(
                f"an SQLite URL takes no parameters ({', '.join(sorted(url.query))}): Herald "
                "sets the connection's own; name the file alone, e.g. sqlite:///./herald.db"
            )
        return url
    raise DatabaseUrlError(
        f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql"
    )
