"""Upgrading a database that holds messages keeps them, their limits and a claim under way."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import text

from herald.domain.model import Event, Outcome, message_id_for
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestResult, ingest
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.unit_of_work import UnitOfWork
from tests.support.events import opted_in_signup
from tests.support.migrations import schema_differences


def store(database: Database, event: Event) -> IngestResult:
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [event], load_ruleset(), now=datetime(2025, 11, 3, 12, tzinfo=UTC))
        uow.commit()
    return result


def test_upgrading_through_0004_keeps_the_messages_and_their_limits(
    empty_database_url: str,
) -> None:
    # 0004 drops the unique constraint on dedup keys: the primary key holds limits since.
    database = Database(empty_database_url)
    try:
        upgrade(database, to="0003")
        store(database, opted_in_signup("u1"))

        upgrade(database)
        again = store(database, replace(opted_in_signup("u1"), event_id="s-u1-again"))

        assert schema_differences(database) == []
        welcome = next(d for d in again.decisions if d.rule == "WELCOME_EMAIL")
        assert welcome.outcome is Outcome.SUPPRESSED
        assert welcome.message_id == message_id_for("WELCOME_EMAIL:u1")
        with database.reader.connect() as connection:
            stored = connection.execute(text("SELECT dedup_key FROM messages")).scalars().all()
        assert stored == ["WELCOME_EMAIL:u1"]
    finally:
        database.dispose()


def test_upgrading_through_0005_keeps_the_messages_and_a_claim_under_way(
    empty_database_url: str,
) -> None:
    # 0005 adds messages.cancel_requested, where a rule's cancel marks those being sent.
    database = Database(empty_database_url)
    try:
        upgrade(database, to="0004")
        store(database, opted_in_signup("u1"))
        welcome = message_id_for("WELCOME_EMAIL:u1")
        with database.writer.begin() as connection:  # being sent, as a dispatcher claims
            connection.execute(
                text(
                    "UPDATE messages SET status = 'sending', claimed_by = 'w1', "
                    "lease_until_us = 1 WHERE message_id = :id"
                ),
                {"id": welcome},
            )
        with database.reader.connect() as connection:
            before = connection.execute(text("SELECT * FROM messages")).mappings().all()

        upgrade(database)

        assert schema_differences(database) == []
        with database.reader.connect() as connection:
            after = connection.execute(text("SELECT * FROM messages")).mappings().all()
        assert [{**row, "cancel_requested": None} for row in before] == [dict(row) for row in after]
        with UnitOfWork(database) as uow:
            done = uow.outbox.cancel_rule("WELCOME_EMAIL", reason="stop", now_us=2)
            uow.commit()
        assert done.in_flight == 1
    finally:
        database.dispose()
