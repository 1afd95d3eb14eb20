"""The store's contract for forgetting a user (`herald users forget`, `DELETE /users/{id}`),
on every backend like the rest of this folder: nothing personal of theirs is left, their
messages still hold their limits, and nobody else's rows change."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from herald.domain.model import Event, UserProfile, message_id_for
from herald.domain.timeutil import parse_timestamp
from herald.rules.loader import load_ruleset
from herald.service.erasure import forget_user
from herald.service.ingest import ingest
from herald.store.claim_outcomes import RETRY
from herald.store.erasure import Forgotten
from herald.store.message_status import FORGOTTEN, PRUNED
from herald.store.outbox import CANCELLED, FAILED, SENDING, SENT
from herald.store.sql import json_value
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.support.store_rows import (
    HOUR,
    T0,
    add_events,
    add_messages,
    claim,
    event_row,
    message_row,
    record,
    stored_message,
)

RULES = load_ruleset()
REASON = "the user was forgotten at 2025-11-03T00:30:00Z (herald users forget)"
NOW = T0 + HOUR // 2  # between the user's two events
SENT_ID, DEAD_ID, WAITING_ID, SENDING_ID, OTHERS_ID = (
    message_id_for(key) for key in ("S:gone", "F:gone", "P:gone", "X:gone", "S:kept")
)


def _forget(database: Any, user_id: str = "gone") -> Forgotten:
    with UnitOfWork(database) as uow:
        done = uow.erasure.forget(user_id, reason=REASON, now_us=NOW)
        uow.commit()
    return done


def _count(database: Any, user_id: str = "gone") -> Forgotten:
    with ReadOnly(database) as read:
        return read.erasure.count(user_id)


def _two_users(database: Any) -> None:
    """ "gone", with two events, traits and a message of each kind: sent, a dead letter
    (with an attempt quoting the address), waiting for a later due time, being sent; and
    "kept", with an event and a sent message."""
    add_events(
        database,
        event_row("g1", user_id="gone", at_us=T0),
        event_row("g2", user_id="gone", at_us=T0 + HOUR),
        event_row("k1", user_id="kept"),
    )
    with UnitOfWork(database) as uow:
        traits = {"email": "ana@example.com"}
        uow.users.upsert_many(
            [
                UserProfile("gone", traits, {"email": T0}),
                UserProfile("kept", traits, {"email": T0}),
            ],
            T0,
        )
        uow.users.set_preferences("gone", {"unsubscribed": ["sms"]}, T0)
        uow.commit()
    add_messages(
        database,
        *(message_row(key, user_id="gone") for key in ("S:gone", "F:gone", "X:gone")),
        message_row("P:gone", user_id="gone", due_us=T0 + 10 * HOUR),
        message_row("S:kept", user_id="kept"),
    )
    assert sorted(claim(database, "w")) == sorted([SENT_ID, DEAD_ID, SENDING_ID, OTHERS_ID])
    assert record(database, SENT_ID, "w", SENT)
    assert record(database, DEAD_ID, "w", FAILED, detail="550 no mailbox ana@example.com")
    assert record(database, OTHERS_ID, "w", SENT)


def _rows(database: Any, table: str, user_id: str) -> list[Any]:
    column = "message_id IN (SELECT message_id FROM messages WHERE user_id = :u)"
    where = column if table == "delivery_attempts" else "user_id = :u"
    with ReadOnly(database) as read:
        return read.connection.exec_driver_sql(
            f"SELECT * FROM {table} WHERE {where.replace(':u', _mark(database))}", (user_id,)
        ).all()


def _mark(database: Any) -> str:
    return "?" if database.is_sqlite else "%s"


def test_forgetting_a_user_leaves_nothing_personal_of_theirs_and_says_what_it_did(
    database: Any,
) -> None:
    _two_users(database)
    foreseen = _count(database)

    done = _forget(database)

    assert (
        done
        == foreseen
        == Forgotten(events=2, messages=4, cancelled=2, in_flight=1, attempts=2, traits=1)
    )
    assert _rows(database, "events", "gone") == []
    assert _rows(database, "delivery_attempts", "gone") == []
    with ReadOnly(database) as read:
        user = read.users.get_many(["gone"])["gone"]
    assert (user.traits, user.trait_times) == ({}, {})
    assert user.unsubscribed == {"sms"}  # a wish not to be messaged outlives the rest
    assert user.pruned_before_us == T0 + HOUR + 1  # after their latest event
    messages = {row.message_id: row for row in _rows(database, "messages", "gone")}
    assert len(messages) == 4  # kept: they hold the limits
    for row in messages.values():
        assert (row.recipient, row.subject, row.body, row.html) == ("", "", FORGOTTEN, None)
    assert messages[SENT_ID].status == SENT
    for waiting in (DEAD_ID, WAITING_ID):
        assert (messages[waiting].status, messages[waiting].last_error) == (CANCELLED, REASON)
    in_flight = messages[SENDING_ID]
    assert (in_flight.status, in_flight.cancel_requested) == (SENDING, REASON)


def test_nobody_else_s_rows_change(database: Any) -> None:
    _two_users(database)

    before = [_rows(database, table, "kept") for table in ("events", "messages", "users")]
    attempts = _rows(database, "delivery_attempts", "kept")
    _forget(database)

    assert [_rows(database, t, "kept") for t in ("events", "messages", "users")] == before
    assert _rows(database, "delivery_attempts", "kept") == attempts
    assert stored_message(database, OTHERS_ID).recipient == "ana@example.com"


def test_a_message_being_sent_ends_cancelled_and_forgetting_again_removes_its_attempt(
    database: Any,
) -> None:
    _two_users(database)
    _forget(database)

    assert record(database, SENDING_ID, "w", RETRY, detail="421 try later, ana@example.com")

    assert stored_message(database, SENDING_ID).status == CANCELLED  # not tried again
    assert _forget(database) == Forgotten(
        events=0, messages=0, cancelled=0, in_flight=0, attempts=1
    )
    assert _rows(database, "delivery_attempts", "gone") == []


def test_a_message_a_prune_redacted_stays_as_it_was(database: Any) -> None:
    """A message a prune redacted before (or before its text said which) holds nothing
    personal: it is not counted as redacted again, and still says it was pruned."""
    add_messages(database, {**message_row("S:gone", user_id="gone"), "body": PRUNED})
    with UnitOfWork(database) as uow:
        uow.users.upsert_many([UserProfile("gone")], T0)
        uow.commit()

    assert _count(database).messages == 0
    assert _forget(database).messages == 0
    assert stored_message(database, SENT_ID).body == PRUNED


def test_a_fence_already_later_than_the_user_s_events_stays(database: Any) -> None:
    add_events(database, event_row("g1", user_id="gone", at_us=T0))
    with UnitOfWork(database) as uow:
        uow.users.upsert_many([UserProfile("gone")], T0)
        uow.retention.mark_pruned(["gone"], before_us=T0 + 5 * HOUR)
        uow.commit()

    _forget(database)

    with ReadOnly(database) as read:
        assert read.users.get_many(["gone"])["gone"].pruned_before_us == T0 + 5 * HOUR


def test_events_racing_the_forgetting_leave_nothing_personal_dated_before_it(
    database: Any,
) -> None:
    """Ingestion of the user's events, in threads, while the user is forgotten: each
    either came first and went with the rest, or came after and was fenced off (stored,
    but every rule skipped it). None of their messages keeps a recipient."""
    _ingest(database, _shortfall(0))  # the user exists before the race
    start = threading.Barrier(9)

    def post(day: int) -> None:
        start.wait()
        _ingest(database, _shortfall(day))

    def forget() -> None:
        start.wait()
        forget_user(database, "gone", now=datetime.now(UTC), how="test")

    threads = [threading.Thread(target=post, args=(day,)) for day in range(1, 9)]
    threads.append(threading.Thread(target=forget))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    after = _rows(database, "events", "gone")  # all dated before the forgetting
    for row in after:
        decisions = json_value(row.decisions)
        assert {d["outcome"] for d in decisions} == {"skipped"}, decisions
    # Each event decided first made an email (a day each), then redacted.
    recipients = [row.recipient for row in _rows(database, "messages", "gone")]
    assert recipients == [""] * (9 - len(after))


def _shortfall(day: int) -> Event:
    return Event(
        f"pf-{day}",
        "gone",
        "payment_failed",
        parse_timestamp(f"2025-10-{day + 1:02d}T10:00:00Z"),
        {"amount": 5.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"email": "ana@example.com"},
    )


def _ingest(database: Any, event: Event) -> None:
    with UnitOfWork(database) as uow:
        ingest(uow, [event], RULES, now=datetime.now(UTC))
        uow.commit()
