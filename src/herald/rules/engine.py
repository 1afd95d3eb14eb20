"""The rule engine: pure functions from an event, the user and their history to decisions.

It reads no clock and no database. The service asks it which history it needs
(``history_windows``), fetches that, calls ``evaluate`` for candidate decisions, looks
up which dedup keys are already held, and calls ``limits.apply_limits`` for the final
word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.domain.model import (
    Decision,
    Event,
    MessageDraft,
    Outcome,
    UserProfile,
    message_id_for,
)
from herald.domain.timeutil import from_micros, iso, readable_span, to_micros
from herald.rules.definition import MaxAge, Rule, RuleSet
from herald.rules.eligibility import (
    consent_problem,
    delivery_note,
    recipient_of,
    withdrawing_trait,
)
from herald.rules.limits import dedup_key

# An event decides at most this many earlier triggers of one rule (e.g. bank links that
# came before their signup). Without a bound, a client replaying thousands of them made
# every later anchor decide every one again: quadratic work and audit rows.
MAX_TRIGGERS_PER_ANCHOR = 100

# The enum members read for every decision, looked up once: reading one through its class
# (``Outcome.TRIGGERED``) goes through the enum metaclass's ``__getattr__`` hook and cost
# about 900 instructions each time, several times per event.
_TRIGGERED, _SKIPPED = Outcome.TRIGGERED, Outcome.SKIPPED


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """The user's events of ``event_type`` with ``start <= timestamp <= end``; when
    ``earliest`` or ``latest`` is set, only that many of the earliest or latest are
    needed."""

    event_type: str
    start: datetime
    end: datetime
    earliest: int | None = None
    latest: int | None = None


def history_windows(event: Event, ruleset: RuleSet) -> list[HistoryWindow]:
    """The slices of the user's history that ``evaluate`` needs for ``event``."""
    windows = []
    for rule in ruleset.triggered_by(event.event_type):
        if rule.after:
            start = event.timestamp - rule.after.within
            # Any anchor in the window will do; the latest is the one a decision names.
            windows.append(HistoryWindow(rule.after.event_type, start, event.timestamp, latest=1))
    for rule in ruleset.anchored_on(event.event_type):
        assert rule.after is not None
        end = event.timestamp + rule.after.within
        windows.append(
            HistoryWindow(rule.trigger, event.timestamp, end, earliest=MAX_TRIGGERS_PER_ANCHOR + 1)
        )
    return windows


def evaluate(
    event: Event, user: UserProfile, history: Sequence[Event], ruleset: RuleSet, now: datetime
) -> list[Decision]:
    """Candidate decisions for ``event``, decided at ``now`` (the server's clock, against
    which a rule's ``max_age`` is counted); ``history`` holds the events
    ``history_windows`` asked for. Triggered candidates carry a dedup key but have not met
    their limit yet."""
    if user.pruned_before_us is not None and to_micros(event.timestamp) < user.pruned_before_us:
        return _before_pruned_history(event, user, user.pruned_before_us, ruleset)
    decisions = []
    views = _Views(user)
    for rule in ruleset.triggered_by(event.event_type):
        decisions.append(_decide_on_trigger(rule, event, views, history, now))
    # Event time, not arrival order: a trigger that came before its anchor is decided now.
    for rule in ruleset.anchored_on(event.event_type):
        decisions.extend(_decide_on_anchor(rule, event, views, history, now))
    return decisions


# A trigger's ``event``, its ``user``, and the ``user`` its conditions see.
_TriggerViews = tuple[dict[str, object], dict[str, object], dict[str, object]]
# What a condition sees of a trigger (``event`` and ``user``) and, when the client sent a
# value as null, which a condition does not see, the same with those values.
_ConditionViews = tuple[dict[str, Any], dict[str, Any] | None]


class _Views:
    """What conditions see of a trigger (``event``, ``user``), built once per trigger
    however many rules read it."""

    def __init__(self, user: UserProfile) -> None:
        self._user = user
        self._built: dict[str, _TriggerViews] = {}
        self._seen: dict[str, _ConditionViews] = {}

    @property
    def profile(self) -> UserProfile:
        return self._user

    def of(self, trigger: Event) -> _TriggerViews:
        """``trigger``'s ``event``, its ``user``, and the ``user`` its conditions see:
        without the traits sent as null, which are no value there, as a property sent as
        null is (`!has(user.country) || ...` takes in a user whose country is null), while
        consent still reads a null ``marketing_opt_in`` as said, and not as consent."""
        views = self._built.get(trigger.event_id)
        if views is None:
            user = self._user.seen_by(trigger)
            # Most users have no trait sent as null: told by a scan in C, rather than by
            # building the view without them in Python and comparing sizes.
            stated = user
            if None in user.values():
                stated = {k: v for k, v in user.items() if v is not None}
            views = (trigger.as_context(), user, stated)
            self._built[trigger.event_id] = views
        return views

    def of_condition(self, trigger: Event) -> _ConditionViews:
        """What a condition sees of ``trigger``, and what the client sent, nulls and all,
        when that differs: so that a value sent as null is said to be null, not missing."""
        seen = self._seen.get(trigger.event_id)
        if seen is None:
            event_view, user, stated = self.of(trigger)
            context = {"event": event_view, "user": stated}
            sent = None
            if stated is not user or None in trigger.properties.values():
                sent = {"event": {**event_view, "properties": trigger.properties}, "user": user}
            seen = self._seen[trigger.event_id] = (context, sent)
        return seen


def _before_pruned_history(
    event: Event, user: UserProfile, pruned_before_us: int, ruleset: RuleSet
) -> list[Decision]:
    """An event older than the user's pruned history (or a forgotten user's): the messages
    that held its limits may be gone, so deciding it again could send one twice; and a
    forgotten user is not to be messaged for what they did before. Every rule skips it,
    saying which of the two deleted the history."""
    forgotten = user.forgotten_us
    if forgotten is not None and to_micros(event.timestamp) < forgotten:
        how = f"the user was forgotten at their request at {iso(from_micros(forgotten))}"
    else:
        how = "pruned"
    reason = (
        f"the user's history before {iso(from_micros(pruned_before_us))} was deleted "
        f"({how}), and this {event.event_type} at "
        f"{iso(event.timestamp)} is older: its limits cannot be checked, and its "
        "properties and traits are not kept"
    )
    rules = [*ruleset.triggered_by(event.event_type), *ruleset.anchored_on(event.event_type)]
    return [_skip(rule, reason) for rule in rules]


def _decide_on_trigger(
    rule: Rule, event: Event, views: _Views, history: Sequence[Event], now: datetime
) -> Decision:
    """``rule`` on ``event``, one of its triggers: a rule with an ``after`` window needs
    an anchor in ``history`` within it (the decision names the latest)."""
    window = ""
    if rule.after:
        anchors = [
            anchor
            for anchor in history
            if anchor.event_type == rule.after.event_type
            and anchor.timestamp <= event.timestamp <= anchor.timestamp + rule.after.within
        ]
        if not anchors:
            return _skip(
                rule,
                f"no {rule.after.event_type} within {_span(rule)} before this "
                f"{event.event_type} at {iso(event.timestamp)} (yet: a later-arriving one "
                f"will decide it)",
            )
        anchor = max(anchors, key=lambda a: a.timestamp)
        window = (
            f"{rule.after.event_type} {anchor.event_id} at {iso(anchor.timestamp)} "
            f"is within {_span(rule)}"
        )
    return _decide_rule(rule, event, views, window, now)


def _decide_on_anchor(
    rule: Rule, anchor: Event, views: _Views, history: Sequence[Event], now: datetime
) -> list[Decision]:
    """``rule`` on each of its triggers in ``history`` that came within its window after
    ``anchor`` (which arrived later): the earliest ``MAX_TRIGGERS_PER_ANCHOR`` of them."""
    assert rule.after is not None
    # By id: rules anchored on one event type each ask for their triggers, so a trigger in
    # two of their slices is in ``history`` twice, and would be decided (and counted) twice.
    triggers = sorted(
        {
            event.event_id: event
            for event in history
            if event.event_type == rule.trigger
            and anchor.timestamp <= event.timestamp <= anchor.timestamp + rule.after.within
        }.values(),
        key=lambda t: (t.timestamp, t.event_id),
    )
    decisions = [
        _decide_rule(
            rule,
            trigger,
            views,
            f"{rule.trigger} {trigger.event_id} at {iso(trigger.timestamp)} came within "
            f"{_span(rule)} after this {anchor.event_type}",
            now,
        )
        for trigger in triggers[:MAX_TRIGGERS_PER_ANCHOR]
    ]
    if len(triggers) > MAX_TRIGGERS_PER_ANCHOR:
        decisions.append(
            _skip(
                rule,
                f"later {rule.trigger} events within {_span(rule)} after this {anchor.event_type} "
                f"were not decided: an event decides at most the earliest "
                f"{MAX_TRIGGERS_PER_ANCHOR}",
            )
        )
    return decisions


def _decide_rule(rule: Rule, trigger: Event, views: _Views, window: str, now: datetime) -> Decision:
    """``rule`` on ``trigger``, whose window held (``window`` says how; empty for a rule
    without one): triggered when it is young enough for the rule's ``max_age`` at
    ``now``, and its condition, the user's consent and a recipient hold too; else
    skipped, saying all it found."""
    if rule.max_age is not None and now - trigger.timestamp > rule.max_age.age:
        return _skip(rule, _too_old(rule.max_age, trigger, now))
    event_view, user_view, _ = views.of(trigger)
    clauses = [window] if window else []
    if rule.condition is not None:
        result = rule.condition.evaluate(*views.of_condition(trigger))
        clauses.append(result.explanation)
        if not result.holds:
            return _skip(rule, "; ".join(clauses))
    consent = consent_problem(rule, user_view, views.profile) or _withdrawn_later(
        rule, views.profile
    )
    if consent:
        return _skip(rule, "; ".join([*clauses, consent]))
    recipient, missing = recipient_of(rule, user_view)
    if recipient is None:
        return _skip(rule, "; ".join([*clauses, missing]))
    key = dedup_key(rule, trigger)
    message_id = message_id_for(key)
    why = "; ".join(clauses)  # what held: the window and the condition
    return Decision(
        rule=rule.id,
        rule_version=rule.version,
        outcome=_TRIGGERED,
        reason=(why or "no condition") + delivery_note(rule.channel, recipient),
        message_id=message_id,
        dedup_key=key,
        draft=MessageDraft(
            message_id=message_id,
            dedup_key=key,
            channel=rule.channel,
            recipient=recipient,
            trigger=trigger,
            limit=str(rule.limit),  # its value: ``.value`` is a property, run in Python
            why=why,
            event_view=event_view,
            user_view=user_view,
        ),
    )


def _withdrawn_later(rule: Rule, profile: UserProfile) -> str | None:
    """Why the user's latest traits (event time) refuse a marketing ``rule`` the trigger's
    own traits allowed, or None. What the user says now wins for consent, as the dispatcher
    asks again before sending: deciding otherwise created a message only to cancel it."""
    problem = consent_problem(rule, profile.traits)
    if not problem:
        return None
    # Which trait said so, and the time of the event it came from: the one to look for
    # among the user's events, none of whose decisions is about this rule.
    name, when = withdrawing_trait(profile)
    if when is None:
        return f"{problem}, as an event later than this one says"
    return (
        f"{problem}, as the user's {name} from an event at {iso(from_micros(when))}, "
        "later than this one, says"
    )


def _too_old(max_age: MaxAge, trigger: Event, now: datetime) -> str:
    return (
        f"{trigger.event_type} {trigger.event_id} at {iso(trigger.timestamp)} is "
        f"{readable_span(now - trigger.timestamp)} old, past the rule's max_age of "
        f"{max_age.span}: a message about it would come too late"
    )


def _span(rule: Rule) -> str:
    assert rule.after is not None
    return rule.after.span


def _skip(rule: Rule, reason: str) -> Decision:
    return Decision(rule.id, rule.version, _SKIPPED, reason)
