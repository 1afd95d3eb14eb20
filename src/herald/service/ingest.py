"""Ingest a batch of events in one unit of work: store each event with its decisions and
the messages they create, or recognise it as a duplicate."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from herald.delivery.quiet_hours import HoldPolicy, no_hold
from herald.domain.model import Decision, Event, MessageDraft, Outcome, UserProfile
from herald.domain.timeutil import to_micros
from herald.rules import engine
from herald.rules.definition import Rule, RuleSet
from herald.rules.templates import TemplateProblem
from herald.store.events import EventRow
from herald.store.outbox import PENDING, MessageRow
from herald.store.unit_of_work import UnitOfWork


class LimitRace(RuntimeError):
    """A message's dedup key was taken between reading the keys held and writing: the
    user locks make it unreachable, and the unit of work is rolled back if it happens."""


class IngestStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"  # the event id is taken by a different payload


@dataclass(frozen=True, slots=True)
class IngestResult:
    event_id: str
    status: IngestStatus
    decisions: list[Decision] = field(default_factory=list)  # made now: an accepted event's
    # A duplicate's decisions, made when the event was first accepted, as the audit shows
    # them: a client retrying after a lost answer learns what became of its event.
    earlier: list[dict[str, Any]] = field(default_factory=list)


def ingest(
    uow: UnitOfWork,
    events: Sequence[Event],
    ruleset: RuleSet,
    *,
    now: datetime,
    hold: HoldPolicy = no_hold,
) -> list[IngestResult]:
    """Decide and stage ``events`` in ``uow`` (the caller commits). One result per event,
    in order. Duplicates (same id, same payload) and conflicts change nothing."""
    uow.lock([e.user_id for e in events] + [e.event_id for e in events])
    stored = uow.events.fingerprints(e.event_id for e in events)
    profiles = uow.users.get_many(e.user_id for e in events)
    batch = _Batch(uow, ruleset)
    results: list[IngestResult | None] = [None] * len(events)
    plans: list[tuple[int, Event, list[Decision]]] = []
    seen: dict[str, str] = {}
    duplicates: list[int] = []
    for index, event in enumerate(events):
        fingerprint = event.fingerprint()
        prior = stored.get(event.event_id) or seen.get(event.event_id)
        if prior is not None:
            if prior == fingerprint:
                duplicates.append(index)
            else:
                results[index] = IngestResult(event.event_id, IngestStatus.CONFLICT)
            continue
        seen[event.event_id] = fingerprint
        profile = profiles.get(event.user_id) or UserProfile(event.user_id)
        profile = profile.merged(event.user_traits, to_micros(event.timestamp))
        profiles[event.user_id] = profile
        candidates = engine.evaluate(event, profile, batch.history(event), ruleset)
        plans.append((index, event, candidates))
        batch.remember(event, fingerprint)

    held = uow.outbox.holders(
        d.dedup_key
        for _, _, cands in plans
        for d in cands
        if d.outcome is Outcome.TRIGGERED and d.dedup_key
    )
    now_us = to_micros(now)
    rules = {rule.id: rule for rule in ruleset.rules}
    event_rows: list[EventRow] = []
    message_rows: list[MessageRow] = []
    for index, event, candidates in plans:
        decisions = engine.apply_limits(candidates, held)
        for position, decision in enumerate(decisions):
            if decision.draft is None:
                continue
            try:
                row = _message_row(decision.draft, rules[decision.rule], ruleset, now, hold)
            except TemplateProblem as exc:
                # This event's data breaks the template: its rule cannot send, the others can.
                decisions[position] = replace(
                    decision,
                    outcome=Outcome.SKIPPED,
                    reason=f"the message could not be rendered: {exc}",
                    message_id=None,
                    dedup_key=None,
                    draft=None,
                )
                continue
            held[decision.draft.dedup_key] = decision.draft.message_id
            message_rows.append(row)
        event_rows.append(
            _event_row(event, batch.fingerprints[event.event_id], decisions, ruleset, now_us)
        )
        results[index] = IngestResult(event.event_id, IngestStatus.ACCEPTED, decisions)

    _answer_duplicates(uow, events, duplicates, results)
    uow.users.upsert_many((profiles[uid] for uid in batch.users), now_us)
    uow.events.add_many(event_rows)
    if uow.outbox.add_many(message_rows) != len(message_rows):
        # Another process took a dedup key between our read and write: the user lock
        # makes this unreachable, so refuse rather than store a decision that lies.
        raise LimitRace("a dedup key was taken concurrently; the batch is rolled back")
    return [result for result in results if result is not None]


def _answer_duplicates(
    uow: UnitOfWork,
    events: Sequence[Event],
    duplicates: list[int],
    results: list[IngestResult | None],
) -> None:
    """Fill in the results of the ``duplicates`` (indexes into ``events``) with the
    decisions of the event they repeat: stored, or accepted earlier in this batch."""
    if not duplicates:
        return
    here = {r.event_id: r for r in results if r is not None and r.status is IngestStatus.ACCEPTED}
    stored = uow.events.decisions_of(
        events[i].event_id for i in duplicates if events[i].event_id not in here
    )
    for index in duplicates:
        event_id = events[index].event_id
        twin = here.get(event_id)
        earlier = [d.as_json() for d in twin.decisions] if twin else stored.get(event_id, [])
        results[index] = IngestResult(event_id, IngestStatus.DUPLICATE, earlier=earlier)


class _Batch:
    """Events of this batch not yet written, so later events in it see earlier ones."""

    def __init__(self, uow: UnitOfWork, ruleset: RuleSet) -> None:
        self._uow = uow
        self._ruleset = ruleset
        self._by_user: dict[str, list[Event]] = defaultdict(list)
        self.fingerprints: dict[str, str] = {}
        self.users: dict[str, None] = {}

    def remember(self, event: Event, fingerprint: str) -> None:
        self._by_user[event.user_id].append(event)
        self.fingerprints[event.event_id] = fingerprint
        self.users[event.user_id] = None

    def history(self, event: Event) -> list[Event]:
        found: list[Event] = []
        for window in engine.history_windows(event, self._ruleset):
            found += self._uow.events.in_window(
                event.user_id,
                window.event_type,
                to_micros(window.start),
                to_micros(window.end),
                earliest=window.earliest,
                latest=window.latest,
            )
            found += [
                other
                for other in self._by_user.get(event.user_id, ())
                if other.event_type == window.event_type
                and window.start <= other.timestamp <= window.end
            ]
        return found


def _event_row(
    event: Event, fingerprint: str, decisions: list[Decision], ruleset: RuleSet, now_us: int
) -> EventRow:
    return {
        "event_id": event.event_id,
        "fingerprint": fingerprint,
        "user_id": event.user_id,
        "event_type": event.event_type,
        "event_time_us": to_micros(event.timestamp),
        "received_us": now_us,
        "properties": dict(event.properties),
        "user_traits": dict(event.user_traits),
        "decisions": [decision.as_json() for decision in decisions],
        "ruleset_version": ruleset.version,
    }


def _message_row(
    draft: MessageDraft, rule: Rule, ruleset: RuleSet, now: datetime, hold: HoldPolicy
) -> MessageRow:
    subject, body, html = rule.id, "", None
    if rule.template:
        rendered = ruleset.templates.render(
            rule.template, {"event": draft.event_view, "user": draft.user_view}
        )
        subject, body, html = rendered.subject, rendered.body, rendered.html
    held = hold(draft.channel, draft.user_view, now)
    return {
        "message_id": draft.message_id,
        "dedup_key": draft.dedup_key,
        "user_id": draft.trigger.user_id,
        "event_id": draft.trigger.event_id,
        "rule": rule.id,
        "rule_version": rule.version,
        "channel": draft.channel,
        "category": rule.category.value,
        "recipient": draft.recipient,
        "subject": subject,
        "body": body,
        "html": html,
        "status": PENDING,
        "created_us": to_micros(now),
        "due_us": to_micros(held[0]) if held else to_micros(now),
        "attempts": 0,
        "hold_reason": held[1] if held else None,
    }
