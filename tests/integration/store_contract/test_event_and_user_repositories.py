"""The store's contract, run on every backend (the ``database`` fixture is parametrized over
SQLite and PostgreSQL): the events and users repositories, and the row types
ingestion builds for them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from herald.domain.model import UserProfile
from herald.store import events as events_store
from herald.store import outbox as outbox_store
from herald.store import tables
from herald.store.database import Database
from herald.store.events import EventRow
from herald.store.outbox import (
    MessageRow,
)
from herald.store.unit_of_work import ReadOnly, UnitOfWork
from tests.support.store_rows import (
    DAY,
    HOUR,
    MIB,
    T0,
    add_events,
    event_ids,
    event_row,
)


def test_the_row_types_name_exactly_the_columns_their_repositories_insert() -> None:
    """Ingestion builds rows as ``EventRow`` and ``MessageRow``; the repositories insert the
    columns they list. A column added to one and not the others would be lost or fail."""
    assert set(EventRow.__annotations__) == set(events_store._COLUMNS)
    assert set(events_store._COLUMNS) == {c.name for c in tables.events.c} - {"seq"}
    assert set(MessageRow.__annotations__) == set(outbox_store._MESSAGE_COLUMNS)
    delivery_state = {"sent_us", "last_error", "claimed_by", "lease_until_us", "cancel_requested"}
    assert (
        set(outbox_store._MESSAGE_COLUMNS) == {c.name for c in tables.messages.c} - delivery_state
    )
    # A claim returns every column, by name.
    assert set(outbox_store.ClaimedMessage._fields) == {c.name for c in tables.messages.c}


class TestEventRepository:
    def test_fingerprints_name_only_the_events_already_stored(self, database: Database) -> None:
        add_events(database, event_row("e1"), event_row("e2"))

        with ReadOnly(database) as read:
            found = read.events.fingerprints(["e1", "e3", "e2", "e1"])

        assert found == {"e1": "fp-e1", "e2": "fp-e2"}

    def test_fingerprints_answer_for_more_ids_than_one_query_can_bind(
        self, database: Database
    ) -> None:
        add_events(database, *(event_row(f"e{i}", at_us=T0 + i) for i in range(1200)))

        with ReadOnly(database) as read:
            found = read.events.fingerprints([f"e{i}" for i in range(0, 2400, 2)])

        assert len(found) == 600
        assert found["e1198"] == "fp-e1198"

    def test_decisions_of_give_back_what_was_stored_for_stored_events_only(
        self, database: Database
    ) -> None:
        add_events(database, event_row("e1"))

        with ReadOnly(database) as read:
            found = read.events.decisions_of(["e1", "e2"])

        assert found == {"e1": event_row("e1")["decisions"]}

    def test_the_database_refuses_a_second_event_with_the_same_id(self, database: Database) -> None:
        add_events(database, event_row("e1"))

        with pytest.raises(IntegrityError):
            add_events(database, event_row("e1", at_us=T0 + HOUR))

    def test_in_window_includes_events_exactly_on_both_bounds(self, database: Database) -> None:
        add_events(
            database,
            event_row("before", at_us=T0 - 1),
            event_row("at-start", at_us=T0),
            event_row("inside", at_us=T0 + HOUR),
            event_row("at-end", at_us=T0 + 2 * HOUR),
            event_row("after", at_us=T0 + 2 * HOUR + 1),
        )

        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0, T0 + 2 * HOUR)

        assert sorted(event_ids(found)) == ["at-end", "at-start", "inside"]

    def test_in_window_gives_only_as_many_of_the_earliest_or_latest_as_asked(
        self, database: Database
    ) -> None:
        add_events(database, *(event_row(f"e{n}", at_us=T0 + (5 - n) * HOUR) for n in range(5)))

        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0, T0 + 9 * HOUR, earliest=2)

        assert event_ids(found) == ["e4", "e3"]
        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0, T0 + 9 * HOUR, latest=2)
        assert event_ids(found) == ["e0", "e1"]

    def test_in_window_sees_only_that_users_events_of_that_type(self, database: Database) -> None:
        add_events(
            database,
            event_row("mine", user_id="u_1", event_type="payment_failed"),
            event_row("other-type", user_id="u_1", event_type="signup_completed"),
            event_row("other-user", user_id="u_2", event_type="payment_failed"),
        )

        with ReadOnly(database) as read:
            found = read.events.in_window("u_1", "payment_failed", T0 - HOUR, T0 + HOUR)

        assert event_ids(found) == ["mine"]

    def test_in_window_returns_events_as_they_were_stored(self, database: Database) -> None:
        properties = {"amount": 12.5, "attempt_number": 3, "failure_reason": "INSUFFICIENT_FUNDS"}
        traits = {"email": "ana@example.com", "marketing_opt_in": True, "name": "Ana Sá"}
        add_events(database, event_row("e1", at_us=T0 + 7, properties=properties, traits=traits))

        with ReadOnly(database) as read:
            [event] = read.events.in_window("u_1", "payment_failed", T0, T0 + HOUR)

        assert event.user_id == "u_1"
        assert event.event_type == "payment_failed"
        assert event.timestamp == DAY + timedelta(microseconds=7)
        assert event.timestamp.tzinfo is not None
        assert dict(event.properties) == properties
        assert dict(event.user_traits) == traits

    def test_page_for_user_lists_newest_first_then_continues_after_the_cursor(
        self, database: Database
    ) -> None:
        # Two events share a time: the one that arrived later (higher seq) comes first.
        add_events(
            database,
            event_row("oldest", at_us=T0),
            event_row("tie-first-arrival", at_us=T0 + HOUR),
            event_row("tie-second-arrival", at_us=T0 + HOUR),
            event_row("newest", at_us=T0 + 2 * HOUR),
            event_row("someone-else", user_id="u_2", at_us=T0 + 3 * HOUR),
        )

        with ReadOnly(database) as read:
            first, more = read.events.page_for_user("u_1", limit=2, before=None, max_bytes=MIB)
            assert more
            cursor = (first[-1].event_time_us, first[-1].seq)
            second, more = read.events.page_for_user("u_1", limit=2, before=cursor, max_bytes=MIB)
            assert not more
            cursor = (second[-1].event_time_us, second[-1].seq)
            third, more = read.events.page_for_user("u_1", limit=2, before=cursor, max_bytes=MIB)

        assert event_ids(first) == ["newest", "tie-second-arrival"]
        assert event_ids(second) == ["tie-first-arrival", "oldest"]
        assert third == [] and not more

    def test_a_page_stops_once_its_events_hold_max_bytes_but_never_before_its_first(
        self, database: Database
    ) -> None:
        big = {"note": "x" * 5000}
        add_events(
            database,
            *(event_row(f"e{n}", at_us=T0 + n * HOUR, properties=big) for n in range(4)),
        )

        with ReadOnly(database) as read:
            two, more = read.events.page_for_user("u_1", limit=10, before=None, max_bytes=12_000)
            one, _ = read.events.page_for_user("u_1", limit=10, before=None, max_bytes=100)
            every, done = read.events.page_for_user("u_1", limit=10, before=None, max_bytes=MIB)

        assert event_ids(two) == ["e3", "e2"] and more
        assert event_ids(one) == ["e3"]
        assert event_ids(every) == ["e3", "e2", "e1", "e0"] and not done


class TestUserRepository:
    def test_get_many_returns_only_the_users_it_knows(self, database: Database) -> None:
        with UnitOfWork(database) as uow:
            uow.users.upsert_many(
                [UserProfile("u_1", {"email": "ana@example.com"}, {"email": T0})], T0
            )
            uow.commit()

        with ReadOnly(database) as read:
            found = read.users.get_many(["u_1", "u_unknown", "u_1"])

        assert found == {"u_1": UserProfile("u_1", {"email": "ana@example.com"}, {"email": T0})}

    def test_get_many_answers_for_more_users_than_one_query_can_bind(
        self, database: Database
    ) -> None:
        profiles = [UserProfile(f"u_{i}", {"n": i}, {"n": T0}) for i in range(1100)]
        with UnitOfWork(database) as uow:
            uow.users.upsert_many(profiles, T0)
            uow.commit()

        with ReadOnly(database) as read:
            found = read.users.get_many(f"u_{i}" for i in range(0, 2200, 2))

        assert len(found) == 550
        assert found["u_1098"].traits == {"n": 1098}

    def test_an_upsert_of_a_merged_profile_updates_the_user_and_keeps_first_seen(
        self, database: Database
    ) -> None:
        with UnitOfWork(database) as uow:
            uow.users.upsert_many(
                [
                    UserProfile("u_1", {"email": "old@example.com"}, {"email": T0}),
                    UserProfile("u_2", {"email": "bo@example.com"}, {"email": T0}),
                ],
                T0,
            )
            uow.commit()

        with UnitOfWork(database) as uow:
            known = uow.users.get_many(["u_1"])["u_1"]
            merged = known.merged({"email": "new@example.com", "phone": "+351910"}, T0 + HOUR)
            uow.users.upsert_many([merged], T0 + 2 * HOUR)
            uow.commit()

        with ReadOnly(database) as read:
            profiles = read.users.get_many(["u_1", "u_2"])
            row = read.users.get_row("u_1")
        assert profiles["u_1"].traits == {"email": "new@example.com", "phone": "+351910"}
        assert profiles["u_1"].trait_times == {"email": T0 + HOUR, "phone": T0 + HOUR}
        assert profiles["u_2"].traits == {"email": "bo@example.com"}
        assert (row.first_seen_us, row.updated_us) == (T0, T0 + 2 * HOUR)

    def test_an_upsert_keeps_preferences_and_unsubscribes_reach_the_rules_beside_the_traits(
        self, database: Database
    ) -> None:
        with UnitOfWork(database) as uow:
            uow.users.set_preferences("u_1", {"unsubscribed": ["sms", "email"]}, T0)
            uow.commit()
        with UnitOfWork(database) as uow:
            profile = uow.users.get_many(["u_1"])["u_1"].merged({"email": "a@b.c"}, T0)
            uow.users.upsert_many([profile], T0 + HOUR)
            uow.commit()

        with ReadOnly(database) as read:
            profile = read.users.get_many(["u_1"])["u_1"]
            row = read.users.get_row("u_1")
        assert profile.traits == {"email": "a@b.c"}
        assert profile.unsubscribed == {"email", "sms"}
        # When they were set, for the skip reason: stored without each name's own time,
        # as preferences set before Herald kept it, each has that of the whole list.
        assert profile.unsubscribed_times == {"email": T0, "sms": T0}
        assert row.traits == {"email": "a@b.c"}
        assert row.preferences == {"unsubscribed": ["sms", "email"], "set_us": T0}

    @pytest.mark.parametrize("stored", [{"unsubscribed": ["sms"]}, {"set_us": "soon"}])
    def test_preferences_stored_without_a_readable_time_are_read_with_none(
        self, database: Database, stored: dict[str, object]
    ) -> None:
        """Rows set before the time was kept hold none: their unsubscribes still count."""
        with UnitOfWork(database) as uow:
            uow.users.set_preferences("u_old", {"unsubscribed": ["sms"]}, T0)
            uow.commit()
        with database.writer.begin() as connection:
            connection.execute(
                tables.users.update().values(preferences={"unsubscribed": ["sms"], **stored})
            )

        with ReadOnly(database) as read:
            profile = read.users.get_many(["u_old"])["u_old"]
        assert (profile.unsubscribed, profile.unsubscribed_times) == ({"sms"}, {})
