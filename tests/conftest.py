"""Shared fixtures: a database of each backend, an app on it, a fixed clock.

PostgreSQL tests run wherever one is reachable (HERALD_TEST_POSTGRES_URL, by default
the local server) and skip with the reason otherwise; under CI (CI=true) an unreachable
PostgreSQL is a failure, not a skip.

Property tests explore new examples on every local run; under CI they replay a fixed
sequence, so a landing depends on the code, not on the luck of a seed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from herald.delivery.providers.webhook import WebhookProvider
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.tables import metadata

# CI=true, as CI services set it: CI=false or CI=0 is a local run.
UNDER_CI = os.environ.get("CI") == "true"
settings.register_profile("ci", derandomize=True, print_blob=True)
if UNDER_CI:
    settings.load_profile("ci")

POSTGRES_ADMIN_URL = os.environ.get(
    "HERALD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(autouse=True)
def _no_logging_to_closed_streams() -> Iterator[None]:
    """Take off the root logger the handlers whose stream a test closed: a command run
    in-process (Typer's CliRunner) configures logging onto the stderr it swapped in,
    closed once it returns, and a later line (an SMTP test server's thread saying a
    connection was lost) then printed a "Logging error" traceback into the test run."""
    yield
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if getattr(getattr(handler, "stream", None), "closed", False):
            root.removeHandler(handler)


@pytest.fixture(autouse=True)
def _webhook_sessions_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close the HTTP sessions of the webhook providers a test sent with, as a server does
    when it stops: a session left open is reported when it is collected, in whichever
    test runs then (its ERROR line broke a test counting them)."""
    sent_with: dict[int, WebhookProvider] = {}
    get_session = WebhookProvider._get_session

    def recorded(provider: WebhookProvider) -> object:
        sent_with[id(provider)] = provider
        return get_session(provider)

    monkeypatch.setattr(WebhookProvider, "_get_session", recorded)
    yield
    for provider in sent_with.values():
        asyncio.run(provider.aclose())


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2025, 11, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def _postgres_server() -> str | None:
    """None when reachable, else why not."""
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {str(exc).splitlines()[0]}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for this test session, migrated, dropped at the end: shared by
    every test, it holds what the tests before wrote, so a test that counts rows takes
    ``emptied_postgres_url`` instead."""
    problem = _postgres_server()
    if problem:
        if UNDER_CI:
            pytest.fail(problem + " (CI must test PostgreSQL)")
        pytest.skip(problem)
    name = f"herald_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    database = Database(url)
    upgrade(database)
    database.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _empty_postgres(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        names = ", ".join(table.name for table in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture
def emptied_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database with its tables emptied, for a test that reads
    what is in it: a test before may have left rows there (a dead letter, say)."""
    _empty_postgres(postgres_url)
    return postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database: every backend Herald supports."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'herald.db'}"
        database = Database(url)
        upgrade(database)
        database.dispose()
        return url
    url: str = request.getfixturevalue("emptied_postgres_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()
