"""Arrival order does not change which messages a user gets.

For one user's events in any order, one request at a time or all in one batch, the
messages stored are those the rule file asks for, reckoned from event times alone.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from herald.domain.model import Event
from herald.rules.definition import RuleSet
from herald.rules.loader import load_ruleset
from herald.service.ingest import IngestStatus, ingest
from herald.store.database import Database
from herald.store.migrate import upgrade
from herald.store.tables import messages
from herald.store.unit_of_work import UnitOfWork

USER = "u_1"
CONTACT = {"email": "maria@example.com", "phone": "+351912345678"}
START = datetime(2025, 11, 2, tzinfo=UTC)
NOW = datetime(2025, 11, 10, tzinfo=UTC)
DAY = timedelta(days=1)

Message = tuple[str, str]  # (rule, dedup key)


@functools.cache
def default_ruleset() -> RuleSet:
    """Loaded once, and kept out of the test's arguments so a falsifying example stays short."""
    return load_ruleset()


@pytest.fixture(scope="module")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty migrated SQLite file; each example copies it rather than migrating anew."""
    path = tmp_path_factory.mktemp("arrival") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


def make_event(
    index: int,
    event_type: str,
    at: datetime,
    *,
    marketing_opt_in: bool | None = None,
    **properties: object,
) -> Event:
    """Every event carries the user's contact traits; consent is stated where given."""
    traits: dict[str, object] = dict(CONTACT)
    if marketing_opt_in is not None:
        traits["marketing_opt_in"] = marketing_opt_in
    return Event(f"evt_{index}", USER, event_type, at, properties, traits)


# Gaps around the 24-hour nudge window and moments around UTC midnight, plus any other.
LINK_GAPS = st.sampled_from([-1, 0, 1, 3600, 86_399, 86_400, 86_401]) | st.integers(
    -86_400, 2 * 86_400
)
SECOND_OF_DAY = st.sampled_from([0, 1, 86_398, 86_399]) | st.integers(0, 86_399)


@st.composite
def one_users_events(draw: st.DrawFn) -> list[Event]:
    """At most one signup, some bank links around it and some failed payments over 3 days."""
    found: list[Event] = []
    signup_at = START + timedelta(seconds=draw(st.integers(0, 2 * 86_400)))
    opt_in = draw(st.sampled_from([None, True, True, False]))  # None: no signup
    if opt_in is not None:
        found.append(make_event(0, "signup_completed", signup_at, marketing_opt_in=opt_in))
    for gap in draw(st.lists(LINK_GAPS, max_size=3)):
        link_at = signup_at + timedelta(seconds=gap)
        found.append(make_event(len(found), "link_bank_success", link_at))
    payments = st.tuples(
        st.integers(0, 2),
        SECOND_OF_DAY,
        st.sampled_from(["INSUFFICIENT_FUNDS", "CARD_EXPIRED"]),
        st.integers(1, 4),
    )
    for day, second, reason, attempt in draw(st.lists(payments, max_size=5)):
        failed_at = START + day * DAY + timedelta(seconds=second)
        found.append(
            make_event(
                len(found),
                "payment_failed",
                failed_at,
                amount=10.0,
                attempt_number=attempt,
                failure_reason=reason,
            )
        )
    return found


@st.composite
def one_users_events_as_they_arrive(draw: st.DrawFn) -> list[Event]:
    """One user's events (see ``one_users_events``) in any order."""
    return draw(st.permutations(draw(one_users_events())))


def signup_then(*gaps: int) -> list[Event]:
    """Links ``gaps`` seconds after an opted-in signup, arriving before it."""
    signup_at = START + timedelta(hours=9)
    links = [
        make_event(n, "link_bank_success", signup_at + timedelta(seconds=gap))
        for n, gap in enumerate(gaps, start=1)
    ]
    return [*links, make_event(0, "signup_completed", signup_at, marketing_opt_in=True)]


def failed_payments_around_midnight() -> list[Event]:
    """A last second of a day and the first of the next, the later arriving first."""
    return [
        make_event(
            n,
            "payment_failed",
            at,
            amount=10.0,
            attempt_number=3,
            failure_reason="INSUFFICIENT_FUNDS",
        )
        for n, at in enumerate([START + DAY, START + DAY - timedelta(seconds=1)])
    ]


def expected_messages(history: Iterable[Event]) -> set[Message]:
    """The spec, by event time: what the default rule file should send for this user."""
    history = list(history)
    signups = [e for e in history if e.event_type == "signup_completed"]
    wanted: set[Message] = set()
    opted_in = [s for s in signups if s.user_traits["marketing_opt_in"] is True]
    if opted_in:
        wanted.add(("WELCOME_EMAIL", f"WELCOME_EMAIL:{USER}"))
    for link in (e for e in history if e.event_type == "link_bank_success"):
        if any(s.timestamp <= link.timestamp <= s.timestamp + DAY for s in opted_in):
            wanted.add(("BANK_LINK_NUDGE_SMS", f"BANK_LINK_NUDGE_SMS:{USER}"))
    for failed in (e for e in history if e.event_type == "payment_failed"):
        day = failed.timestamp.astimezone(UTC).date().isoformat()
        if failed.properties["failure_reason"] == "INSUFFICIENT_FUNDS":
            wanted.add(("INSUFFICIENT_FUNDS_EMAIL", f"INSUFFICIENT_FUNDS_EMAIL:{USER}:{day}"))
        if failed.properties["attempt_number"] >= 3:
            wanted.add(("HIGH_RISK_ALERT", f"HIGH_RISK_ALERT:{USER}:{day}"))
    return wanted


def stored_after(batches: Sequence[Sequence[Event]], migrated_file: Path) -> set[Message]:
    """Ingest each batch in its own committed unit of work on a fresh database."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "herald.db"
        shutil.copyfile(migrated_file, path)
        database = Database(f"sqlite:///{path}")
        try:
            for batch in batches:
                with UnitOfWork(database) as uow:
                    results = ingest(uow, batch, default_ruleset(), now=NOW)
                    uow.commit()
                assert {r.status for r in results} <= {IngestStatus.ACCEPTED}
            with database.reader.connect() as connection:
                rows = connection.execute(select(messages.c.rule, messages.c.dedup_key))
                return {(row.rule, row.dedup_key) for row in rows}
        finally:
            database.dispose()


# The window's edges, which 40 drawn examples seldom hit, are always tried.
@example(arrivals=signup_then(86_400)).via("a link at the end of the window, arriving first")
@example(arrivals=signup_then(86_401)).via("a link a second too late, arriving first")
@example(arrivals=signup_then(-1)).via("a link a second before the signup, arriving first")
@example(arrivals=failed_payments_around_midnight()).via("two days a second apart")
@settings(max_examples=40, deadline=None)
@given(arrivals=one_users_events_as_they_arrive())
def test_any_arrival_order_sends_the_messages_the_event_times_call_for(
    arrivals: list[Event], migrated_file: Path
) -> None:
    expected = expected_messages(arrivals)

    one_per_request = stored_after([[e] for e in arrivals], migrated_file)
    all_in_one_batch = stored_after([arrivals], migrated_file) if arrivals else set()

    assert one_per_request == expected
    assert all_in_one_batch == expected
