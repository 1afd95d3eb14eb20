"""Locks another PostgreSQL client holds, as a long migration or an operator's forgotten
transaction would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def tables_locked(url: str, *tables: str, at_most_s: float = 20.0) -> Iterator[None]:
    """Another client holds ``tables`` locked against every use (as a long migration or an
    operator's forgotten transaction would) until the block ends, or at most ``at_most_s``
    seconds: a statement that nothing cut off ends then rather than hang the test."""
    holder = psycopg.connect(libpq_url(url))
    holder.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(at_most_s, holder.rollback)
    release.start()
    try:
        yield
    finally:
        release.cancel()
        holder.rollback()
        holder.close()
