"""Where a batch's time goes, in-process and without HTTP: parsing, Herald's whole
ingestion (rules, rows, storage, commit), and the storage alone.

    .venv/bin/python bench/floor.py [--batches 30] [--batch-size 1000] [--rounds 3]

The events are the batch load's (``loadgen.EventFactory``: distinct ``payment_failed``
events for users drawn from 100,000). Each round ingests them with ``service.ingest``
into a fresh SQLite database, one unit of work per batch, then writes the very rows that
run stored (read back, already built) into another fresh database through the same
repositories, in the same batches. That last figure is the floor under batch ingestion
on this machine: what storing costs with no rules, no validation and no HTTP. Figures
are the median round, in microseconds of one core per event.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadgen import EventFactory
from measure import SPREAD_S
from pydantic import TypeAdapter

from herald.api.schemas.requests import BatchIn
from herald.bootstrap import load_rules_and_delivery
from herald.domain.model import Event, UserProfile
from herald.rules.definition import RuleSet
from herald.service.ingest import ingest
from herald.service.intake import Rejection, to_event
from herald.store.database import Database
from herald.store.migrate import ensure_current
from herald.store.sql import json_value
from herald.store.unit_of_work import ReadOnly, UnitOfWork

_JSON_COLUMNS = ("properties", "user_traits", "decisions")  # of events, as stored
_Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[UserProfile]]


def _fresh_database(folder: Path, name: str) -> Database:
    database = Database(f"sqlite:///{folder / name}.db")
    ensure_current(database, auto_upgrade=True)
    return database


def _parse(bodies: list[bytes], ruleset: RuleSet) -> tuple[list[list[Event]], float]:
    """The events of each body, as the batch route reads them; and seconds spent."""
    batch = TypeAdapter(BatchIn)
    started = time.perf_counter()
    batches = []
    for body in bodies:
        events = []
        for payload in batch.validate_json(body)["events"]:
            event = to_event(payload, ruleset)
            if isinstance(event, Rejection):
                raise SystemExit(f"Herald refuses a generated event: {event.errors}")
            events.append(event)
        batches.append(events)
    return batches, time.perf_counter() - started


def _ingest(database: Database, batches: list[list[Event]], ruleset: RuleSet) -> float:
    started = time.perf_counter()
    for events in batches:
        with UnitOfWork(database) as uow:
            ingest(uow, events, ruleset, now=datetime.now(UTC))
            uow.commit()
    return time.perf_counter() - started


def _stored_rows(database: Database, batches: list[list[Event]]) -> list[_Rows]:
    """What ``_ingest`` stored, batch by batch, in the shape the repositories take."""
    rows: list[_Rows] = []
    with ReadOnly(database) as read:
        for events in batches:
            ids = tuple(event.event_id for event in events)
            marks = ", ".join("?" * len(ids))
            stored = read.connection.exec_driver_sql(
                f"SELECT * FROM events WHERE event_id IN ({marks})", ids
            )
            event_rows = [
                {
                    name: json_value(value) if name in _JSON_COLUMNS else value
                    for name, value in row._mapping.items()
                }
                for row in stored
            ]
            messages = read.connection.exec_driver_sql(
                f"SELECT * FROM messages WHERE event_id IN ({marks})", ids
            )
            message_rows = [dict(row._mapping) for row in messages]
            users = read.users.get_many(event.user_id for event in events)
            rows.append((event_rows, message_rows, list(users.values())))
    return rows


def _store(database: Database, rows: list[_Rows]) -> float:
    started = time.perf_counter()
    for event_rows, message_rows, profiles in rows:
        with UnitOfWork(database) as uow:
            uow.users.upsert_many(profiles, event_rows[0]["received_us"])
            uow.events.add_many(event_rows)
            uow.outbox.add_many(message_rows)
            uow.commit()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="batches per round")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ruleset, _plan = load_rules_and_delivery(None, outbox=Path(tempfile.gettempdir()) / "unused")
    per_event: dict[str, list[float]] = {"parse": [], "ingest": [], "store": []}
    for round_number in range(1, args.rounds + 1):
        events = EventFactory(
            f"floor{round_number}",
            users=args.users,
            spread_s=SPREAD_S,
            now=time.time(),
            seed=round_number,
        )
        bodies = [events.batch_body(args.batch_size) for _ in range(args.batches)]
        count = args.batches * args.batch_size
        with tempfile.TemporaryDirectory(prefix="herald-floor-") as folder:
            batches, parse_s = _parse(bodies, ruleset)
            herald = _fresh_database(Path(folder), "herald")
            ingest_s = _ingest(herald, batches, ruleset)
            rows = _stored_rows(herald, batches)
            herald.dispose()
            floor = _fresh_database(Path(folder), "floor")
            store_s = _store(floor, rows)
            floor.dispose()
        for name, seconds in (("parse", parse_s), ("ingest", ingest_s), ("store", store_s)):
            per_event[name].append(seconds / count * 1e6)
        print(
            f"round {round_number}: parse {per_event['parse'][-1]:.1f} us, ingest "
            f"{per_event['ingest'][-1]:.1f} us, storage alone {per_event['store'][-1]:.1f} us "
            "per event",
            file=sys.stderr,
        )
    parse_us, ingest_us, store_us = (statistics.median(per_event[k]) for k in per_event)
    print(f"batches of {args.batch_size:,}, median of {args.rounds} round(s), one core:")
    for label, micros in (
        ("parse and validate", parse_us),
        ("ingest: rules, rows, storage, commit", ingest_us),
        ("storage alone: the same rows and batches", store_us),
    ):
        print(f"  {label:42} {micros:6.1f} us/event = {1e6 / micros:8,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
