"""Requests through an outage of the database, as a client and an operator see it: each
request answers 503 with a Retry-After, and the log holds one traceback for the outage,
not one per request (at thousands of requests a second, those would bury everything
else), then one line when requests succeed again; its first line says what the database
said. A bug still logs every failure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from herald.api.app import create_app
from herald.config import Settings
from herald.rules.loader import load_ruleset
from herald.service.writer import DatabaseUnavailable, IngestFailed, ThreadWriter
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.events import opted_in_signup, signup_payload
from tests.support.postgres_locks import tables_locked
from tests.support.processes import connections_refused, scratch_postgres_database

WRITER = "herald.service.writer"
APP = "herald.api.app"
ADMIN_ROUTES = "reading the audit, setting preferences or forgetting a user"
RULES = load_ruleset()
NOW = datetime(2025, 11, 3, 12, tzinfo=UTC)
# How long a request waited for its answer, and the error it got, if any.
Outcome = tuple[float, BaseException | None]


def migrated(url: str) -> str:
    database = Database(url)
    upgrade(database)
    database.dispose()
    return url


def api_settings(url: str, tmp_path: Path, **extra: Any) -> Settings:
    """An API alone (no dispatcher) on the database at ``url``, once migrated."""
    return Settings(
        database_url=migrated(url),
        dispatcher=False,
        outbox_file=str(tmp_path / "outbox.jsonl"),
        **extra,
    )


def writer_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == WRITER]


def app_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == APP]


@pytest.mark.postgres
def test_an_outage_answers_503_with_retry_after_and_logs_one_traceback_then_its_end(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path)
        with TestClient(create_app(settings)) as client:
            assert client.post("/events", json=signup_payload("u_0")).status_code == 202
            with (
                caplog.at_level(logging.INFO, logger=WRITER),
                connections_refused(postgres_url, url),
            ):
                refused = [
                    client.post("/events", json=signup_payload(f"u_{n}")) for n in range(1, 21)
                ]
                audit = client.get("/audit/u_0")
            with caplog.at_level(logging.INFO, logger=WRITER):
                stored = client.post("/events", json=signup_payload("u_21"))

    assert {answer.status_code for answer in refused} == {503}
    assert {answer.headers.get("retry-after") for answer in refused} == {"5"}
    assert {answer.json()["detail"] for answer in refused} == {"the database is unavailable; retry"}
    assert audit.status_code == 503 and audit.headers["retry-after"] == "5"
    assert stored.status_code == 202
    lines = writer_lines(caplog)
    assert [line.levelname for line in lines if line.exc_info] == ["ERROR"]
    assert "the database cannot serve it now: connection failed" in lines[0].getMessage()
    # Twenty failures within a few seconds: at most a counted line between first and last.
    assert len(lines) <= 3
    assert lines[-1].getMessage().startswith("ingestion succeeds again")
    assert "20 request(s) failed" in lines[-1].getMessage()


@contextmanager
def read_only(admin_url: str, url: str) -> Iterator[None]:
    """The database of ``url`` is set read-only, as for a cutover to another server, its
    sessions ended so that the next ones are read-only; then writable again, as when the
    cutover is called off, leaving the sessions made meanwhile read-only."""
    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
        )
        connection.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" RESET default_transaction_read_only'
            )
        admin.dispose()


@pytest.mark.postgres
def test_a_read_only_postgresql_is_an_outage_not_a_bug_and_not_ready(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database set read-only (a cutover; a standby a failover left the URL on): every
    event was answered without a Retry-After, as for a bug, its traceback logged each
    time, and /readyz said ready, so the load balancer went on sending events there.
    Once writable again, the sessions opened meanwhile refused every event for as long
    as they stayed in the pool: for ever."""
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path)
        with TestClient(create_app(settings)) as client:
            assert client.post("/events", json=signup_payload("u_0")).status_code == 202
            with caplog.at_level(logging.INFO, logger=WRITER), read_only(postgres_url, url):
                refused = [
                    client.post("/events", json=signup_payload(f"u_{n}")) for n in range(1, 6)
                ]
                ready = client.get("/readyz")
            # Each pooled session made while it was read-only refuses one write, then is
            # replaced by one that takes them.
            with caplog.at_level(logging.INFO, logger=WRITER):
                stored = [client.post("/events", json=signup_payload("u_6")) for _ in range(20)]
            ready_again = client.get("/readyz")

    assert {answer.status_code for answer in refused} == {503}
    assert {answer.headers.get("retry-after") for answer in refused} == {"5"}
    assert ready.status_code == 503 and "read-only" in ready.json()["database"]
    assert 202 in {answer.status_code for answer in stored}
    assert ready_again.status_code == 200
    tracebacks = [line for line in writer_lines(caplog) if line.exc_info]
    assert len(tracebacks) == 1
    assert "read-only transaction" in tracebacks[0].getMessage()


@pytest.mark.postgres
def test_readiness_comes_back_once_the_database_takes_writes_again_without_events(
    postgres_url: str, tmp_path: Path
) -> None:
    """A process not ready gets no events from its load balancer: its readiness must
    not wait for a write to replace the read-only sessions it pooled meanwhile, which
    it reported read-only, probe after probe, for ever."""
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path)
        with TestClient(create_app(settings)) as client:
            with read_only(postgres_url, url):
                for n in range(5):
                    client.post("/events", json=signup_payload(f"u_{n}"))
                assert client.get("/readyz").status_code == 503
            probes = [client.get("/readyz").status_code for _ in range(20)]

    assert 200 in probes


@pytest.mark.postgres
def test_readiness_failing_for_the_database_says_why_in_the_log(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/readyz answers the error's type alone (it asks for no token, and the database's
    words name its host). A process its load balancer took out for it gets no other
    request, so nothing in its log said why: a refused password and a host gone both
    read "unreachable: OperationalError"."""
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path)
        with TestClient(create_app(settings)) as client, caplog.at_level(logging.INFO, APP):
            assert client.get("/readyz").status_code == 200
            with connections_refused(postgres_url, url):
                probes = [client.get("/readyz") for _ in range(3)]
            back = client.get("/readyz")

    assert {probe.status_code for probe in probes} == {503}
    assert back.status_code == 200
    lines = app_lines(caplog)
    assert [line.levelname for line in lines if line.exc_info] == ["ERROR"]
    assert "the readiness check (/readyz) failed" in lines[0].getMessage()
    assert "not currently accepting connections" in lines[0].getMessage()
    assert lines[-1].getMessage().startswith("the readiness check (/readyz) succeeds again")


def test_a_failure_that_is_a_bug_logs_its_traceback_every_time_and_no_retry_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = migrated(f"sqlite:///{tmp_path / 'herald.db'}")
    database = Database(url)
    with database.writer.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.user_id = 'u_poison' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END"
        )
    database.dispose()
    settings = Settings(
        database_url=url, dispatcher=False, outbox_file=str(tmp_path / "outbox.jsonl")
    )
    with TestClient(create_app(settings)) as client, caplog.at_level(logging.INFO, logger=WRITER):
        answers = [client.post("/events", json=signup_payload("u_poison")) for _ in range(3)]

    assert {answer.status_code for answer in answers} == {503}
    assert {answer.json()["detail"] for answer in answers} == {"could not store the events; retry"}
    assert not any("retry-after" in answer.headers for answer in answers)
    tracebacks = [line for line in writer_lines(caplog) if line.exc_info]
    assert len(tracebacks) == 3
    assert all("unavailable" not in line.getMessage() for line in tracebacks)


@pytest.mark.postgres
def test_every_pooled_connection_busy_answers_503_with_retry_after_not_500(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database so slow (a table locked by a migration, a long query) that requests hold
    every connection of a process's pool: the next requests, once they have waited the
    pool's timeout, answer 503 with a Retry-After, as in an outage, not 500."""
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path)
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.post("/events", json=signup_payload("u_0")).status_code == 202
            engine = app.state.runtime.database.reader
            monkeypatch.setattr(engine.pool, "_timeout", 0.5)  # rather than 30 s
            held = []
            while engine.pool.checkedout() < engine.pool.size() + engine.pool._max_overflow:
                held.append(engine.connect())
            audit = client.get("/audit/u_0")
            event = client.post("/events", json=signup_payload("u_1"))
            for connection in held:
                connection.close()
            stored = client.post("/events", json=signup_payload("u_2"))

    assert (audit.status_code, audit.headers.get("retry-after")) == (503, "5")
    assert (event.status_code, event.headers.get("retry-after")) == (503, "5")
    assert stored.status_code == 202


@pytest.mark.postgres
def test_audits_and_preferences_through_an_outage_log_it_as_ingestion_does_not_per_request(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An audit page polled through an outage wrote a WARNING line a request."""
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path)
        with TestClient(create_app(settings)) as client:
            assert client.post("/events", json=signup_payload("u_0")).status_code == 202
            with (
                caplog.at_level(logging.INFO, logger=APP),
                connections_refused(postgres_url, url),
            ):
                refused = [client.get("/audit/u_0") for _ in range(20)]
                refused += [
                    client.post("/users/u_0/preferences", json={"unsubscribed": []})
                    for _ in range(20)
                ]
            with caplog.at_level(logging.INFO, logger=APP):
                served = client.get("/audit/u_0")

    assert {(answer.status_code, answer.headers.get("retry-after")) for answer in refused} == {
        (503, "5")
    }
    assert served.status_code == 200
    lines = app_lines(caplog)
    assert [line.levelname for line in lines if line.exc_info] == ["ERROR"]
    assert (
        lines[0]
        .getMessage()
        .startswith(f"{ADMIN_ROUTES} failed: the database cannot serve it now: connection failed")
    )
    assert len(lines) <= 3
    assert lines[-1].getMessage().startswith(f"{ADMIN_ROUTES} succeeds again: 40 request(s) failed")


@pytest.mark.postgres
def test_forgetting_a_user_through_an_outage_is_logged_by_its_name_and_its_end_said(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DELETE /users through an outage was logged as "reading the audit or setting
    preferences", and its success after it never said the outage had ended."""
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path)
        with TestClient(create_app(settings)) as client:
            assert client.post("/events", json=signup_payload("u_0")).status_code == 202
            with (
                caplog.at_level(logging.INFO, logger=APP),
                connections_refused(postgres_url, url),
            ):
                refused = client.delete("/users/u_0")
            with caplog.at_level(logging.INFO, logger=APP):
                served = client.delete("/users/u_0")

    assert (refused.status_code, served.status_code) == (503, 200)
    said = [line.getMessage() for line in app_lines(caplog)]
    assert said[0].startswith(f"{ADMIN_ROUTES} failed: the database cannot serve it now")
    assert said[-1].startswith(f"{ADMIN_ROUTES} succeeds again: 1 request(s) failed")


@pytest.mark.postgres
def test_a_request_held_up_by_a_lock_logs_the_statement_timeout_not_an_unavailable_database(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A table another client held locked: the server was up, but the line said "the
    database is unavailable", the statement timeout only in the traceback below it."""
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path, postgres_statement_timeout=0.5)
        with (
            TestClient(create_app(settings)) as client,
            caplog.at_level(logging.INFO, logger=WRITER),
            tables_locked(url, "events"),
        ):
            held_up = client.post("/events", json=signup_payload("u_1"))

    assert (held_up.status_code, held_up.headers.get("retry-after")) == (503, "5")
    [first] = writer_lines(caplog)
    assert first.getMessage().startswith(
        "ingestion failed: the database cannot serve it now: "
        "canceling statement due to statement timeout;"
    )
    assert "unavailable" not in first.getMessage()


@pytest.mark.postgres
def test_readyz_says_so_while_events_give_up_waiting_on_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    # Every event was answered 503 after the statement timeout while /readyz said ready:
    # a load balancer kept sending events to a process that could store none.
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path, postgres_statement_timeout=0.5)
        with TestClient(create_app(settings)) as client:
            with tables_locked(url, "events"):
                refused = client.post("/events", json=signup_payload("u_1"))
                held_up = client.get("/readyz")
            stored = client.post("/events", json=signup_payload("u_2"))
            ready = client.get("/readyz")

    assert (refused.status_code, held_up.status_code) == (503, 503)
    assert held_up.json()["database"] == (
        "events waited the statement timeout and were refused: a lock held on Herald's "
        "tables (LOCK TABLE, a migration, a session left in a transaction), or a server "
        "too busy to answer"
    )
    assert (stored.status_code, ready.status_code) == (202, 200)


def requests_timed(writer: ThreadWriter, *, spaced_s: float, count: int) -> list[Outcome]:
    """``count`` single-event requests, one every ``spaced_s``: how long each waited for
    its answer, and the error it got, if any."""

    async def timed(n: int) -> Outcome:
        await asyncio.sleep(n * spaced_s)
        started = time.monotonic()
        try:
            await writer.ingest([opted_in_signup(f"u_{n}")])
        except IngestFailed as exc:
            return time.monotonic() - started, exc
        return time.monotonic() - started, None

    async def all_of_them() -> list[Outcome]:
        writer.start()
        try:
            return await asyncio.gather(*(timed(n) for n in range(count)))
        finally:
            writer.stop()

    return asyncio.run(all_of_them())


@pytest.mark.postgres
def test_requests_queued_behind_a_lock_held_elsewhere_get_their_503_within_the_timeout(
    postgres_url: str,
) -> None:
    # Both writer threads waited the timeout for the lock, and the requests queued behind
    # them then waited it afresh: their 503 came after nearly twice the timeout (60 s for
    # the default 30), past many clients' timeouts.
    with scratch_postgres_database(postgres_url) as url:
        database = Database(migrated(url), statement_timeout_s=1.0)
        writer = ThreadWriter(database, RULES, clock=lambda: NOW, gather_seconds=0.002, threads=2)
        with tables_locked(url, "events"):
            outcomes = requests_timed(writer, spaced_s=0.1, count=5)
        database.dispose()

    assert all(isinstance(error, DatabaseUnavailable) for _, error in outcomes), outcomes
    waits = [round(waited, 2) for waited, _ in outcomes]
    assert max(waits) < 1.4, f"requests waited {waits} s for a timeout of 1 s"


@pytest.mark.postgres
def test_requests_queued_behind_a_lock_released_in_time_are_all_stored(postgres_url: str) -> None:
    with scratch_postgres_database(postgres_url) as url:
        database = Database(migrated(url), statement_timeout_s=1.0)
        writer = ThreadWriter(database, RULES, clock=lambda: NOW, gather_seconds=0.002, threads=2)
        with tables_locked(url, "events", at_most_s=0.6):
            outcomes = requests_timed(writer, spaced_s=0.1, count=5)
        database.dispose()

    assert [error for _, error in outcomes] == [None] * 5


@pytest.mark.postgres
def test_audits_queued_for_a_connection_behind_a_lock_get_their_503_within_the_timeout(
    postgres_url: str, tmp_path: Path
) -> None:
    # More requests than a process has connections: those that waited for a connection
    # while the others waited for the lock then waited the whole timeout again.
    with scratch_postgres_database(postgres_url) as url:
        settings = api_settings(url, tmp_path, postgres_statement_timeout=1.0)
        with TestClient(create_app(settings)) as client:
            assert client.post("/events", json=signup_payload("u_0")).status_code == 202

            def audit(_n: int) -> tuple[int, float]:
                started = time.monotonic()
                answer = client.get("/audit/u_0")
                return answer.status_code, time.monotonic() - started

            with tables_locked(url, "events"), ThreadPoolExecutor(24) as pool:
                outcomes = list(pool.map(audit, range(24)))

    assert {status for status, _ in outcomes} == {503}
    waits = sorted(round(waited, 2) for _, waited in outcomes)
    assert waits[-1] < 1.6, f"audits waited {waits} s for a timeout of 1 s"
