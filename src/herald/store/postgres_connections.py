"""PostgreSQL's connections: libpq's timeouts where the URL sets none, and the server's
statement timeout where nothing else set one."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

from herald.observability.logging import first_line
from herald.store.database_url import DatabaseUrlError, hide_password
from herald.store.sql import json_text

# How long a new PostgreSQL connection may take (unless the URL says connect_timeout):
# libpq's default waits for ever on a server or host that never answers.
PG_CONNECT_TIMEOUT_S = 10
# libpq's settings, each where the URL gives none. Past connecting, a server that stops
# answering (its host gone, the network cut) would hold a request, and the pooled
# connection it runs on, until the system's own TCP retries give up, some 15 minutes:
# data unacknowledged for 30 s, or an idle connection unanswered for 10 + 3 x 5 s,
# ends the connection instead, and the request answers 503.
PG_CONNECTION_DEFAULTS = {
    "connect_timeout": PG_CONNECT_TIMEOUT_S,
    "tcp_user_timeout": 30_000,  # milliseconds
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def postgres_engine(
    url: URL, raw_url: str, *, pool_size: int, statement_timeout_s: float
) -> Engine:
    """The engine on the PostgreSQL database of ``url`` (``raw_url`` as given, for the
    message of a URL SQLAlchemy refuses)."""
    given = url.query
    try:
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            json_serializer=json_text,
            json_deserializer=orjson.loads,
            connect_args={k: v for k, v in PG_CONNECTION_DEFAULTS.items() if k not in given},
        )
    except ArgumentError as exc:  # parameters SQLAlchemy reads itself: ?port=x
        raise DatabaseUrlError(
            f"not a database URL: {hide_password(raw_url)!r} ({first_line(exc)})"
        ) from None
    if statement_timeout_s:
        _limit_statements(engine, statement_timeout_s)
    return engine


# Set on a new connection only where nothing else did (the URL's options, PGOPTIONS, the
# role, the database, the server's configuration): a limit the operator chose, even 0, wins.
_STATEMENT_TIMEOUT_UNLESS_SET = (
    "SELECT set_config('statement_timeout', %s, false) FROM pg_settings "
    "WHERE name = 'statement_timeout' AND source = 'default'"
)


def _limit_statements(engine: Engine, seconds: float) -> None:
    """Let PostgreSQL cancel a statement of ``engine``'s that runs over ``seconds``: it
    fails with SQLSTATE 57014, which ``unavailable`` reads as "cannot serve now"."""
    milliseconds = str(max(1, round(seconds * 1000)))

    @event.listens_for(engine, "connect")
    def _set_statement_timeout(dbapi_connection: Any, _record: Any) -> None:
        # In autocommit, so that the setting holds for the session without leaving a
        # transaction open on a connection that is about to enter the pool.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(_STATEMENT_TIMEOUT_UNLESS_SET, (milliseconds,))
        finally:
            dbapi_connection.autocommit = autocommit
