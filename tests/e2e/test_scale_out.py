"""Scale-out: four API processes and two dispatchers share one database, on PostgreSQL
and on one SQLite file (where the processes take turns at its write lock).

Every user's events are sent three times each, to three different API processes, and
all of a user's requests are in flight at once, so duplicates and distinct events of
the same user race each other across processes. Whatever the interleaving, each event
must be stored once, each limit must hold, and each message must be sent once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, func, select

from herald.domain.timeutil import iso, utc_day
from herald.store.database_url import normalise_url
from herald.store.tables import delivery_attempts, events, messages
from tests.support.ports import free_port
from tests.support.processes import (
    HeraldProcess,
    herald_environment,
    run_herald,
    scratch_postgres_database,
    stop_all,
)

pytestmark = [pytest.mark.slow]

USERS = 50
API_PROCESSES = 4
DISPATCHERS = 2
COPIES = 3  # each event is sent this many times, each copy to a different API process
USERS_AT_ONCE = 10  # users whose requests are in flight together (18 requests each)
SIGNUPS_FROM = datetime(2025, 10, 31, 8, 0, tzinfo=UTC)
DAILY_RULES = {"INSUFFICIENT_FUNDS_EMAIL", "HIGH_RISK_ALERT"}
RULES = {"WELCOME_EMAIL", "BANK_LINK_NUDGE_SMS", *DAILY_RULES}


@dataclass
class Cluster:
    database_url: str
    api_urls: list[str]
    outbox: Path
    processes: list[HeraldProcess]
    started: float  # time.monotonic() before the database was made, for the printed timings

    def stop(self) -> None:
        stop_all(self.processes)


@dataclass(frozen=True)
class Answer:
    event_id: str
    api: int
    status_code: int
    body: dict[str, Any]


@contextmanager
def empty_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'herald.db'}"
        return
    with scratch_postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A migrated scratch database with the API processes and dispatchers running on it."""
    started = time.monotonic()
    outbox = tmp_path / "outbox.jsonl"
    env = herald_environment(HERALD_OUTBOX_FILE=str(outbox), HERALD_LOG_LEVEL="WARNING")
    with empty_database(request.param, request, tmp_path) as url:
        upgraded = run_herald(["db", "upgrade", "--database", url], env=env, cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        processes: list[HeraldProcess] = []
        try:
            api_urls = []
            for n in range(API_PROCESSES):
                port = free_port()
                api = HeraldProcess(f"api-{n}", log_dir=tmp_path)
                processes.append(api)
                listen = ["--host", "127.0.0.1", "--port", str(port)]
                api.start(
                    ["serve", *listen, "--database", url, "--no-dispatcher"], env, cwd=tmp_path
                )
                api_urls.append(f"http://127.0.0.1:{port}")
            for n in range(DISPATCHERS):
                worker = HeraldProcess(f"dispatcher-{n}", log_dir=tmp_path)
                processes.append(worker)
                worker.start(["worker", "--database", url], env, cwd=tmp_path)
            for api, api_url in zip(processes, api_urls, strict=False):
                api.wait_healthy(f"{api_url}/readyz")
            for worker in processes[API_PROCESSES:]:
                worker.wait_for_output("dispatcher ")
            yield Cluster(url, api_urls, outbox, processes, started)
        finally:
            stop_all(processes)


def user_events(index: int) -> list[dict[str, Any]]:
    """A user who signs up (opted in), links a bank an hour later, then has four payments
    fail for lack of funds the same day, attempts 1 to 4. Every event carries the
    user's traits, as a client's SDK would send them."""
    user_id = f"u_{index:03d}"
    signup = SIGNUPS_FROM + timedelta(minutes=index)
    traits = {
        "email": f"user{index}@example.com",
        "phone": f"+35191{index:07d}",
        "marketing_opt_in": True,
    }

    def event(name: str, event_type: str, at: datetime, **properties: Any) -> dict[str, Any]:
        return {
            "event_id": f"evt_{user_id}_{name}",
            "user_id": user_id,
            "event_type": event_type,
            "event_timestamp": iso(at),
            "properties": properties,
            "user_traits": traits,
        }

    return [
        event("signup", "signup_completed", signup),
        event("bank", "link_bank_success", signup + timedelta(hours=1)),
        *(
            event(
                f"payment_{attempt}",
                "payment_failed",
                signup + timedelta(hours=2, minutes=10 * attempt),
                amount=25.0 + attempt,
                attempt_number=attempt,
                failure_reason="INSUFFICIENT_FUNDS",
            )
            for attempt in range(1, 5)
        ),
    ]


async def fire(api_urls: list[str], users: int) -> list[Answer]:
    """Send every copy of every event, each user's requests all at the same time."""
    limits = httpx.Limits(max_connections=USERS_AT_ONCE * 24, max_keepalive_connections=64)
    gate = asyncio.Semaphore(USERS_AT_ONCE)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

        async def post(payload: dict[str, Any], api: int) -> Answer:
            response = await client.post(f"{api_urls[api]}/events", json=payload)
            return Answer(payload["event_id"], api, response.status_code, response.json())

        async def one_user(index: int) -> list[Answer]:
            async with gate:
                requests = [
                    post(payload, (index + number + copy) % len(api_urls))
                    for number, payload in enumerate(user_events(index))
                    for copy in range(COPIES)
                ]
                return list(await asyncio.gather(*requests))

        per_user = await asyncio.gather(*(one_user(index) for index in range(users)))
    return [answer for answers in per_user for answer in answers]


def wait_until_delivered(database_url: str, timeout: float) -> None:
    """Poll the database until no message is pending or being sent."""
    engine = create_engine(normalise_url(database_url))
    undelivered = select(func.count()).where(messages.c.status.in_(["pending", "sending"]))
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as connection:
                left = connection.execute(undelivered).scalar_one()
            if left == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{left} messages still undelivered after {timeout}s")
            time.sleep(0.25)
    finally:
        engine.dispose()


def read_back(database_url: str) -> tuple[list[Any], list[Any], list[Any]]:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            stored_events = list(connection.execute(select(events)))
            stored_messages = list(connection.execute(select(messages)))
            attempts = list(connection.execute(select(delivery_attempts)))
    finally:
        engine.dispose()
    return stored_events, stored_messages, attempts


def test_many_processes_store_each_event_once_hold_every_limit_and_send_each_message_once(
    cluster: Cluster,
) -> None:
    started = time.monotonic()
    answers = asyncio.run(fire(cluster.api_urls, USERS))
    fired = time.monotonic()
    wait_until_delivered(cluster.database_url, timeout=40)
    delivered = time.monotonic()
    cluster.stop()
    stored_events, stored_messages, attempts = read_back(cluster.database_url)
    lines = cluster.outbox.read_bytes().splitlines() if cluster.outbox.exists() else []
    print(
        f"\nprocesses up in {started - cluster.started:.1f}s; "
        f"{len(answers)} requests in {fired - started:.1f}s, outbox drained "
        f"{delivered - fired:.1f}s later; {len(stored_events)} events, "
        f"{len(stored_messages)} messages, {len(lines)} stub sends"
    )

    # Each distinct event was accepted exactly once; its copies were duplicates.
    sent_ids = {payload["event_id"] for i in range(USERS) for payload in user_events(i)}
    assert len(answers) == len(sent_ids) * COPIES
    assert Counter(answer.status_code for answer in answers) == {
        202: len(sent_ids),
        200: len(sent_ids) * (COPIES - 1),
    }
    accepted = [answer for answer in answers if answer.status_code == 202]
    assert len({answer.event_id for answer in accepted}) == len(sent_ids)

    # ... and stored exactly once, each answered event among them.
    stored_ids = Counter(row.event_id for row in stored_events)
    assert set(stored_ids) == sent_ids
    assert set(stored_ids.values()) == {1}
    assert {answer.event_id for answer in answers} <= set(stored_ids)

    # Every message an accepted answer announced exists; no message exists without one.
    by_id = {row.message_id: row for row in stored_messages}
    announced = {
        decision["message_id"]
        for answer in accepted
        for decision in answer.body["decisions"]
        if decision["outcome"] == "triggered"
    }
    assert announced == set(by_id)

    # Limits held: one message per user and rule, every rule for everyone; the daily
    # ones are keyed to the day the payments failed.
    per_user_rule = Counter((row.user_id, row.rule) for row in stored_messages)
    assert per_user_rule == {(f"u_{i:03d}", rule): 1 for i in range(USERS) for rule in RULES}
    day = utc_day(SIGNUPS_FROM)
    daily = [row for row in stored_messages if row.rule in DAILY_RULES]
    assert {row.dedup_key for row in daily} == {
        f"{rule}:u_{i:03d}:{day}" for i in range(USERS) for rule in DAILY_RULES
    }

    # Every message was sent, once: one attempt each, one line each in the stub's file.
    assert Counter(row.status for row in stored_messages) == {"sent": len(stored_messages)}
    assert Counter(attempt.message_id for attempt in attempts) == dict.fromkeys(by_id, 1)
    assert {attempt.outcome for attempt in attempts} == {"sent"}
    stub_sends = Counter(orjson.loads(line)["message_id"] for line in lines)
    assert set(stub_sends.values()) == {1}
    assert set(stub_sends) == {mid for mid, row in by_id.items() if row.channel in ("email", "sms")}
