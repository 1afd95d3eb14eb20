"""What a pruned history still decides: a once-per-user limit outlives it, and a late event
from before it sends nothing again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from herald.domain.model import Event
from herald.domain.timeutil import to_micros
from herald.rules.definition import RuleSet
from herald.service.ingest import ingest
from herald.service.retention import prune_history
from herald.store.database import Database
from herald.store.outbox import SENT
from herald.store.tables import messages
from herald.store.unit_of_work import UnitOfWork
from tests.support.retention import (
    deliver,
    insufficient_funds,
    message_status_by_user,
    orphan_attempts,
    pruned_before,
    signup,
    store,
    users_with_attempts,
)


def test_a_once_per_user_limit_outlives_the_pruned_history(
    database: Database, ruleset: RuleSet
) -> None:
    long_ago = datetime(2023, 1, 5, 9, 0, tzinfo=UTC)
    store(database, ruleset, [signup("u_old", long_ago)], now=long_ago)
    deliver(database, at=long_ago, outcome_by_user={"u_old": SENT})
    totals = prune_history(
        database, cutoff=long_ago + timedelta(days=400), keep_rules={"WELCOME_EMAIL"}
    )
    assert totals.redacted == 1 and totals.messages == 0
    with database.reader.connect() as connection:
        kept = connection.execute(select(messages)).one()
    assert kept.body == "(pruned)" and kept.recipient == "" and kept.subject == ""
    assert orphan_attempts(database) == 0 and users_with_attempts(database) == set()

    later = long_ago + timedelta(days=500)
    again = Event(
        "evt_u_old_signup_2",
        "u_old",
        "signup_completed",
        later,
        {},
        signup("u_old", later).user_traits,
    )
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [again], ruleset, now=later)
        uow.commit()
    assert result.decisions[0].outcome.value == "suppressed"


def test_a_late_event_from_before_the_pruned_history_sends_nothing_again(
    database: Database, ruleset: RuleSet
) -> None:
    """Its day's insufficient-funds email was sent and pruned with the history: deciding
    the late event again would send that day's email a second time."""
    day = datetime(2024, 1, 10, 20, 0, tzinfo=UTC)
    first = Event(
        "evt_pf_1",
        "u_late",
        "payment_failed",
        day,
        {"amount": 5.0, "attempt_number": 1, "failure_reason": "INSUFFICIENT_FUNDS"},
        {"email": "late@example.com"},
    )
    store(database, ruleset, [first], now=day)
    deliver(database, at=day, outcome_by_user={"u_late": SENT})
    prune_history(database, cutoff=day + timedelta(days=1))
    assert message_status_by_user(database) == {}  # the email that held the day is gone

    late = Event(
        "evt_pf_2",
        "u_late",
        "payment_failed",
        day + timedelta(hours=1),
        dict(first.properties),
        dict(first.user_traits),
    )
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [late], ruleset, now=day + timedelta(days=2))
        uow.commit()

    assert [d.outcome.value for d in result.decisions] == ["skipped", "skipped"]
    assert "was deleted (pruned" in result.decisions[0].reason
    assert message_status_by_user(database) == {}


def test_a_late_event_later_on_the_day_of_the_cutoff_sends_nothing_again(
    database: Database, ruleset: RuleSet
) -> None:
    """The cutoff falls inside a day whose email was sent and pruned: a late event of the
    same day, though after the cutoff, would send that day's email a second time."""
    morning = datetime(2024, 1, 10, 10, 0, tzinfo=UTC)
    store(database, ruleset, [insufficient_funds("evt_am", "u_day", morning)], now=morning)
    deliver(database, at=morning, outcome_by_user={"u_day": SENT})
    prune_history(database, cutoff=morning + timedelta(hours=2))
    assert message_status_by_user(database) == {}
    assert pruned_before(database, ["u_day"]) == {
        "u_day": to_micros(datetime(2024, 1, 11, tzinfo=UTC))  # the whole day is in doubt
    }

    afternoon = insufficient_funds("evt_pm", "u_day", morning + timedelta(hours=4))
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [afternoon], ruleset, now=morning + timedelta(days=2))
        uow.commit()

    assert [d.outcome.value for d in result.decisions] == ["skipped", "skipped"]
    assert "was deleted (pruned" in result.decisions[0].reason
    assert message_status_by_user(database) == {}
