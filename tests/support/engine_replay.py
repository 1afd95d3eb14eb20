"""A user, their events and a replay of the rule engine over them.

``replay`` plays the service's part by hand: it remembers the events that arrived,
hands ``evaluate`` the slices ``history_windows`` asks for, and holds dedup keys the
way the outbox does, so arrival order can be tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from herald.domain.model import Decision, Event, UserProfile
from herald.domain.timeutil import to_micros
from herald.rules import engine, limits
from herald.rules.definition import RuleSet

USER = "u_1"
# When the replay decides: after every event the tests replay, as the server's clock is.
DECIDED_AT = datetime(2025, 11, 10, tzinfo=UTC)
TRAITS: dict[str, Any] = {
    "email": "maria@example.com",
    "phone": "+351912345678",
    "marketing_opt_in": True,
}
SIGNUP_AT = "2025-11-02T10:00:00+00:00"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def event(
    event_type: str,
    when: str | datetime,
    *,
    event_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    traits: Mapping[str, Any] = TRAITS,
) -> Event:
    timestamp = at(when) if isinstance(when, str) else when
    return Event(
        event_id=event_id or f"{event_type}@{timestamp.isoformat()}",
        user_id=USER,
        event_type=event_type,
        timestamp=timestamp,
        properties=dict(properties or {}),
        user_traits=dict(traits),
    )


def payment_failed(
    when: str, *, reason: str = "INSUFFICIENT_FUNDS", attempt: int = 1, event_id: str | None = None
) -> Event:
    properties = {"amount": 25.0, "attempt_number": attempt, "failure_reason": reason}
    return event("payment_failed", when, properties=properties, event_id=event_id)


def replay(
    arrivals: Iterable[Event],
    ruleset: RuleSet,
    *,
    unsubscribed: Iterable[str] = (),
    unsubscribed_us: int | None = None,
    now: datetime = DECIDED_AT,
) -> list[Decision]:
    """Every decision made while ``arrivals`` come in one by one at ``now``, limits
    applied; ``unsubscribed``: what the user unsubscribed from through the API, and
    ``unsubscribed_us`` when (microseconds), if known, the same for each."""
    known: list[Event] = []
    held: dict[str, str] = {}
    names = frozenset(unsubscribed)
    times = {} if unsubscribed_us is None else dict.fromkeys(names, unsubscribed_us)
    profile = UserProfile(USER, {}, unsubscribed=names, unsubscribed_times=times)
    decisions: list[Decision] = []
    for arriving in arrivals:
        profile = profile.merged(arriving.user_traits, to_micros(arriving.timestamp))
        history = [
            other
            for window in engine.history_windows(arriving, ruleset)
            for other in known
            if other.event_type == window.event_type
            and window.start <= other.timestamp <= window.end
        ]
        candidates = engine.evaluate(arriving, profile, history, ruleset, now)
        for decision in limits.apply_limits(candidates, held):
            if decision.draft is not None:
                held[decision.draft.dedup_key] = decision.draft.message_id
            decisions.append(decision)
        known.append(arriving)
    return decisions


def of_rule(decisions: Sequence[Decision], rule: str) -> list[Decision]:
    return [decision for decision in decisions if decision.rule == rule]


def the_one(decisions: Sequence[Decision], rule: str) -> Decision:
    found = of_rule(decisions, rule)
    assert len(found) == 1, found
    return found[0]
