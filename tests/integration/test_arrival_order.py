"""Arrival order does not change which messages a user gets.

For one user's events in any order, one request at a time, all in one batch or cut into
batches of any sizes, the messages stored are those the rule file asks for, reckoned from
event times alone.
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


# Gaps around the 24-hour nudge window (to the microsecond, as timestamps are kept) and
# moments around UTC midnight, plus any other.
MICROSECOND = timedelta(microseconds=1)
LINK_GAPS = st.sampled_from(
    [-MICROSECOND, timedelta(0), MICROSECOND, DAY - MICROSECOND, DAY, DAY + MICROSECOND]
) | st.builds(timedelta, seconds=st.integers(-86_400, 2 * 86_400))
SECOND_OF_DAY = st.sampled_from([0, 1, 86_398, 86_399]) | st.integers(0, 86_399)
SUBSECOND = st.sampled_from([0, 999_999]) | st.integers(0, 999_999)
# What the user's signups say of marketing: each says the same, or none says anything
# (a user who never stated it gets the nudge but no welcome email).
OPT_IN = st.sampled_from([True, False, None])


@st.composite
def one_users_events(draw: st.DrawFn) -> list[Event]:
    """Up to two signups, some bank links around them and some failed payments over 3 days."""
    found: list[Event] = []
    opt_in = draw(OPT_IN)
    signup_seconds = draw(st.lists(st.integers(0, 2 * 86_400), max_size=2))
    for second in signup_seconds:
        signup_at = START + timedelta(seconds=second, microseconds=draw(SUBSECOND))
        found.append(make_event(len(found), "signup_completed", signup_at, marketing_opt_in=opt_in))
    anchors = [e.timestamp for e in found] or [START]
    for gap in draw(st.lists(LINK_GAPS, max_size=3)):
        link_at = draw(st.sampled_from(anchors)) + gap
        found.append(make_event(len(found), "link_bank_success", link_at))
    payments = st.tuples(
        st.integers(0, 2),
        SECOND_OF_DAY,
        SUBSECOND,
        st.sampled_from(["INSUFFICIENT_FUNDS", "CARD_EXPIRED"]),
        st.integers(1, 4),
    )
    for day, second, microsecond, reason, attempt in draw(st.lists(payments, max_size=5)):
        failed_at = START + day * DAY + timedelta(seconds=second, microseconds=microsecond)
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
    """One user's events (see ``one_users_events``) in any order, some sent twice, as a
    client retrying after a lost answer does."""
    events = draw(one_users_events())
    retried = draw(st.lists(st.sampled_from(events), max_size=2)) if events else []
    return draw(st.permutations(events + retried))


def cut_into_batches(arrivals: list[Event], cuts: Sequence[bool]) -> list[list[Event]]:
    """``arrivals`` in order, cut into batches as a client's requests may hold them: a new
    batch before the event where ``cuts`` says so."""
    batches: list[list[Event]] = []
    for index, event in enumerate(arrivals):
        if not batches or (index < len(cuts) and cuts[index]):
            batches.append([])
        batches[-1].append(event)
    return batches


def signup_then(*gaps: timedelta) -> list[Event]:
    """Links ``gaps`` after an opted-in signup, arriving before it."""
    signup_at = START + timedelta(hours=9)
    links = [
        make_event(n, "link_bank_success", signup_at + gap) for n, gap in enumerate(gaps, start=1)
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
    said = {s.user_traits.get("marketing_opt_in") for s in signups}
    if True in said:
        wanted.add(("WELCOME_EMAIL", f"WELCOME_EMAIL:{USER}"))
    # Marketing: the nudge asks for no opt-in, but one stated as anything but true refuses it.
    if False not in said:
        for link in (e for e in history if e.event_type == "link_bank_success"):
            if any(s.timestamp <= link.timestamp <= s.timestamp + DAY for s in signups):
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
                assert {r.status for r in results} <= {
                    IngestStatus.ACCEPTED,
                    IngestStatus.DUPLICATE,
                }
            with database.reader.connect() as connection:
                rows = connection.execute(select(messages.c.rule, messages.c.dedup_key))
                return {(row.rule, row.dedup_key) for row in rows}
        finally:
            database.dispose()


# The window's edges, which 40 drawn examples seldom hit, are always tried.
@example(arrivals=signup_then(DAY), cuts=[]).via("a link at the end of the window, arriving first")
@example(arrivals=signup_then(DAY + MICROSECOND), cuts=[]).via(
    "a link just too late, arriving first"
)
@example(arrivals=signup_then(-MICROSECOND), cuts=[]).via(
    "a link just before the signup, arriving first"
)
@example(arrivals=failed_payments_around_midnight(), cuts=[]).via("two days a second apart")
@settings(max_examples=40, deadline=None)
@given(arrivals=one_users_events_as_they_arrive(), cuts=st.lists(st.booleans()))
def test_any_arrival_order_sends_the_messages_the_event_times_call_for(
    arrivals: list[Event], cuts: list[bool], migrated_file: Path
) -> None:
    expected = expected_messages(arrivals)

    one_per_request = stored_after([[e] for e in arrivals], migrated_file)
    all_in_one_batch = stored_after([arrivals], migrated_file) if arrivals else set()
    in_some_batches = stored_after(cut_into_batches(arrivals, cuts), migrated_file)

    assert one_per_request == expected
    assert all_in_one_batch == expected
    assert in_some_batches == expected
