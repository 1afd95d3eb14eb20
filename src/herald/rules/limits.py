"""Limits: the dedup key that holds a rule's limit for a trigger, and the candidates
whose key is already held turned into suppressions. Pure, as the engine is: the service
reads which keys are held, and the database's unique message id makes them hold."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace

from herald.domain.model import MAX_DEDUP_KEY, Decision, Event, Outcome
from herald.domain.timeutil import utc_day
from herald.rules.definition import Limit, Rule

# Read for every decision, looked up once: an enum member read through its class goes
# through the enum metaclass's ``__getattr__`` hook (about 900 instructions).
_TRIGGERED, _SUPPRESSED = Outcome.TRIGGERED, Outcome.SUPPRESSED
_ONCE_PER_USER, _ONCE_PER_USER_PER_DAY = Limit.ONCE_PER_USER, Limit.ONCE_PER_USER_PER_DAY


def dedup_key(rule: Rule, trigger: Event) -> str:
    """The key that holds ``rule``'s limit for ``trigger``: the rule and the user, plus the
    trigger's UTC day (once per day) or its event id (once per event, a digest when the
    ids would be ambiguous or too long). Two users, or two events the limit tells apart,
    never share one; the ids the API accepts keep it within ``MAX_DEDUP_KEY``."""
    if rule.limit is _ONCE_PER_USER:
        return f"{rule.id}:{trigger.user_id}"
    if rule.limit is _ONCE_PER_USER_PER_DAY:
        return f"{rule.id}:{trigger.user_id}:{utc_day(trigger.timestamp)}"
    if ":" in trigger.user_id:
        # User "a:b" with event "c" and user "a" with event "b:c" would share one key, and
        # one user's message suppress the other's: the digest of both ids tells them apart.
        both = f"{trigger.user_id}\x1f{trigger.event_id}"
        return f"{rule.id}:{trigger.user_id}:#{hashlib.sha256(both.encode()).hexdigest()[:32]}"
    key = f"{rule.id}:{trigger.user_id}:{trigger.event_id}"
    if len(key) <= MAX_DEDUP_KEY:
        return key
    # Ids of the longest allowed lengths overflow the stored key: the event id's digest
    # is as unique and as stable.
    digest = hashlib.sha256(trigger.event_id.encode()).hexdigest()[:32]
    return f"{rule.id}:{trigger.user_id}:#{digest}"


def apply_limits(candidates: Iterable[Decision], held: Mapping[str, str]) -> list[Decision]:
    """Turn triggered candidates whose dedup key is already held into suppressions.

    ``held`` maps dedup keys to the message id holding them. Candidates are taken in
    order, so the second of two candidates with one key is suppressed by the first.
    """
    # Keys taken by these candidates, apart from ``held``: a batch passes every key it
    # has seen so far, and copying that for each event made a batch quadratic.
    taken_here: dict[str, str] = {}
    final = []
    for decision in candidates:
        key = decision.dedup_key
        if decision.outcome is _TRIGGERED and key is not None:
            holder = held.get(key, taken_here.get(key))
            if holder is not None:
                draft = decision.draft
                limit = draft.limit if draft else "limit"
                if draft and draft.why:
                    limit = f"{draft.why}; {limit}"
                decision = replace(
                    decision,
                    outcome=_SUPPRESSED,
                    reason=f"{limit}: dedup key {key} is held by message {holder}",
                    message_id=holder,
                    draft=None,
                )
            else:
                taken_here[key] = decision.message_id or ""
        final.append(decision)
    return final
