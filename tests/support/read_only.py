"""A database that refuses writes, as a command may be pointed at one: an SQLite file its
user may only read, or a PostgreSQL server in read-only mode (a standby, say)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.processes import without_file_powers


@contextmanager
def read_only(database_url: str) -> Iterator[tuple[str, list[str]]]:
    """The URL of the database at ``database_url`` as one that refuses writes, and the
    prefix a ``herald`` command run on it needs (``run_herald``'s ``prefix``)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        options = {"options": "-c default_transaction_read_only=on"}
        yield url.update_query_dict(options).render_as_string(hide_password=False), []
        return
    path = Path(str(url.database))
    path.chmod(0o444)
    try:
        yield database_url, without_file_powers()
    finally:
        path.chmod(0o600)
