"""Ingest a batch of events in one unit of work: store each event with its decisions and
the messages they create, or recognise it as a duplicate."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from herald.delivery.quiet_hours import HoldPolicy, no_hold
from herald.domain.immutable import immutable
from herald.domain.model import Decision, Event, Outcome, UserProfile
from herald.domain.timeutil import from_micros, iso, to_micros
from herald.rules import engine
from herald.rules.definition import Category, RuleSet
from herald.rules.eligibility import closed_to_marketing
from herald.service.batch_rows import BatchRows
from herald.service.profile_limit import (
    MAX_PROFILE_BYTES,
    MAX_PROFILE_TRAITS,
    growth_of,
    json_size,
)
from herald.store.events import EventRow
from herald.store.unit_of_work import UnitOfWork


class LimitRace(RuntimeError):
    """A message's dedup key was taken between reading the keys held and writing: the
    user locks make it unreachable, and the unit of work is rolled back if it happens."""


class IngestStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"  # the event id is taken by a different payload
    PROFILE_FULL = "profile_full"  # its traits would grow the profile past its limits


# Read for every event, looked up once: an enum member read through its class goes
# through the enum metaclass's ``__getattr__`` hook (about 900 instructions).
_ACCEPTED, _TRIGGERED = IngestStatus.ACCEPTED, Outcome.TRIGGERED
_DUPLICATE = IngestStatus.DUPLICATE


@immutable
class IngestResult:
    event_id: str
    status: IngestStatus
    # An accepted event's decisions, made now.
    decisions: list[Decision] = field(default_factory=list)
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
    in order. Duplicates (same id, same payload) and conflicts change nothing.

    Phases, each over the whole batch, so that every read is one query by keys: recognise
    repeats, decide each new event, apply limits and build rows, answer the duplicates,
    write; last, cancel the marketing that the batch's traits closed a channel to."""
    uow.lock([e.user_id for e in events] + [e.event_id for e in events])
    stored_profiles = uow.users.get_many(e.user_id for e in events)
    batch = _Batch(uow, ruleset, dict(stored_profiles), now)  # a copy: the batch changes it
    results: list[IngestResult | None] = [None] * len(events)
    fresh, duplicates = _screen(uow, events, results)
    plans = []
    taken: dict[str, str] = {}  # the fingerprint of the event this batch takes, by its id
    refused: dict[str, str] = {}  # and of the one it refused, whose id stays free
    for index, sent, fingerprint in fresh:
        if sent.event_id in taken or sent.event_id in refused:
            repeated = _repeat_of(sent.event_id, fingerprint, taken, refused)
            if repeated is _DUPLICATE:
                duplicates.append(index)
                continue
            if repeated is not None:
                results[index] = IngestResult(sent.event_id, repeated)
                continue
        event = batch.kept_of(sent)
        candidates = batch.decide(event)
        if candidates is None:
            refused[event.event_id] = fingerprint
            results[index] = IngestResult(event.event_id, IngestStatus.PROFILE_FULL)
        else:
            taken[event.event_id] = fingerprint
            plans.append((index, event, fingerprint, candidates))
    # The messages already holding the dedup keys the candidates want.
    held = uow.outbox.holders(
        d.dedup_key
        for *_, candidates in plans
        for d in candidates
        if d.outcome is _TRIGGERED and d.dedup_key
    )
    rows = BatchRows(ruleset, now, hold)
    for index, event, fingerprint, candidates in plans:
        decisions = rows.add(event, fingerprint, candidates, held)
        results[index] = IngestResult(event.event_id, _ACCEPTED, decisions)
    _answer_duplicates(uow, events, duplicates, results)

    profiles = batch.profiles_to_store()
    uow.users.upsert_many(profiles, rows.now_us)
    uow.events.add_many(rows.events)
    if uow.outbox.add_many(rows.messages) != len(rows.messages):
        # Another process took a dedup key between our read and write: the user lock
        # makes this unreachable, so refuse rather than store a decision that lies.
        raise LimitRace("a dedup key was taken concurrently; the batch is rolled back")
    _cancel_withdrawn_marketing(uow, stored_profiles, profiles, rows)
    return [result for result in results if result is not None]


def _cancel_withdrawn_marketing(
    uow: UnitOfWork, stored: Mapping[str, UserProfile], profiles: list[UserProfile], rows: BatchRows
) -> None:
    """Traits that close a channel to marketing (an opt-in turned false, a new unsubscribe)
    cancel the user's marketing still waiting on it, as an unsubscribe through the API
    does: a nudge held until 08:00 must not reach a user who opted out at 22:00."""
    marketing = Category.MARKETING  # looked up once: an enum member's lookup is slow
    made_here = {row["user_id"] for row in rows.messages if row["category"] == marketing}
    # Each user's event rows, gathered once and only for a batch that closes a channel:
    # looked through for every user who closed one, a batch of opt-outs went quadratic.
    events_of: dict[str, list[EventRow]] | None = None
    for profile in profiles:
        earlier = stored.get(profile.user_id)
        if earlier is None and profile.user_id not in made_here:
            continue  # a user new to Herald: nothing of theirs waits but what this batch made
        closed = closed_to_marketing(profile.traits)
        if earlier is not None:
            closed -= closed_to_marketing(earlier.traits)
        if closed:
            if events_of is None:
                events_of = defaultdict(list)
                for row in rows.events:
                    events_of[row["user_id"]].append(row)
            said = _withdrawn_by(profile, events_of.get(profile.user_id, []))
            uow.outbox.cancel_marketing(
                profile.user_id,
                closed,
                reason=f"{said}closed {', '.join(sorted(closed))} to marketing at {iso(rows.now)}",
                now_us=rows.now_us,
            )


def _withdrawn_by(profile: UserProfile, events: list[EventRow]) -> str:
    """Which of ``events`` (this batch's of the user) withdrew the consent, and what its traits said
    (``event e9 (link_bank_success at ...) set marketing_opt_in to false, which ``): a
    support agent reading why a message was cancelled otherwise had only the time it was
    decided, and the event that did it listed no decision about the message."""
    said = []
    for name in _CONSENT_TRAITS:
        if name not in profile.traits or not closed_to_marketing({name: profile.traits[name]}):
            continue
        at = profile.trait_times.get(name)
        # The event the stored value came from: the latest in event time, the later
        # arrival on a tie, as the profile merges them.
        source = next(
            (
                row
                for row in reversed(events)
                if row["event_time_us"] == at and name in row["user_traits"]
            ),
            None,
        )
        if source is not None:
            value = json.dumps(profile.traits[name], default=str)[:80]
            said.append(
                f"event {source['event_id']} ({source['event_type']} at "
                f"{iso(from_micros(source['event_time_us']))}) set {name} to {value}"
            )
    return f"{'; '.join(said)}, which " if said else "the user's traits "


_CONSENT_TRAITS = ("marketing_opt_in", "unsubscribed")


def _screen(
    uow: UnitOfWork, events: Sequence[Event], results: list[IngestResult | None]
) -> tuple[list[tuple[int, Event, str]], list[int]]:
    """Split ``events`` into those not stored (index, event, fingerprint), repeats of one
    another among them, and the indexes of the duplicates of stored ones; a conflict with
    a stored event (its id taken by another payload) gets its result here."""
    stored = uow.events.fingerprints(e.event_id for e in events)
    fresh: list[tuple[int, Event, str]] = []
    duplicates: list[int] = []
    for index, event in enumerate(events):
        fingerprint = event.fingerprint()
        prior = stored.get(event.event_id)
        if prior is None:
            fresh.append((index, event, fingerprint))
        elif prior == fingerprint:
            duplicates.append(index)
        else:
            results[index] = IngestResult(event.event_id, IngestStatus.CONFLICT)
    return fresh, duplicates


def _repeat_of(
    event_id: str, fingerprint: str, taken: Mapping[str, str], refused: Mapping[str, str]
) -> IngestStatus | None:
    """What an event is that repeats the id of one earlier in its batch, by the
    fingerprints of those the batch took (``taken``) and refused (``refused``): a
    duplicate of the one taken with its payload, a conflict with one of another, refused
    alike as a repeat of one refused; None, to be decided, while its id is free. A
    refused event stores nothing, so another payload may take its id: decided as a
    conflict with it, the client's corrected event was rejected in the batch and
    accepted alone."""
    holder = taken.get(event_id)
    if holder is not None:
        return _DUPLICATE if holder == fingerprint else IngestStatus.CONFLICT
    if refused.get(event_id) == fingerprint:
        return IngestStatus.PROFILE_FULL
    return None


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
    here = {r.event_id: r for r in results if r is not None and r.status is _ACCEPTED}
    stored = uow.events.decisions_of(
        events[i].event_id for i in duplicates if events[i].event_id not in here
    )
    for index in duplicates:
        event_id = events[index].event_id
        twin = here.get(event_id)
        earlier = [d.as_json() for d in twin.decisions] if twin else stored.get(event_id, [])
        results[index] = IngestResult(event_id, IngestStatus.DUPLICATE, earlier=earlier)


class _Batch:
    """The users' profiles as this batch changes them, and its events not yet written,
    so that later events in it see earlier ones."""

    def __init__(
        self, uow: UnitOfWork, ruleset: RuleSet, profiles: dict[str, UserProfile], now: datetime
    ) -> None:
        self._uow = uow
        self._ruleset = ruleset
        self._profiles = profiles
        self._now = now
        self._by_user: dict[str, list[Event]] = defaultdict(list)
        self._sizes: dict[str, int] = {}  # each profile's traits, in bytes of JSON
        self._fences_read: set[str] = set()  # users whose forgotten_us was read

    def kept_of(self, event: Event) -> Event:
        """``event`` as it is kept: without its properties and traits when it is dated
        before its user's deleted history (pruned, or the user forgotten). Every rule
        skips such an event, and a forgotten user's retried signup otherwise put their
        email back into their profile and the stored event, undoing the erasure."""
        profile = self._profiles.get(event.user_id)
        fence = profile.pruned_before_us if profile is not None else None
        if profile is None or fence is None or to_micros(event.timestamp) >= fence:
            return event
        if event.user_id not in self._fences_read:
            # Read for such an event alone, not with every profile: the rules' reason then
            # says whether an erasure or a prune deleted the history.
            self._fences_read.add(event.user_id)
            forgotten = self._uow.users.forgotten_us(event.user_id)
            self._profiles[event.user_id] = replace(profile, forgotten_us=forgotten)
        return Event(event.event_id, event.user_id, event.event_type, event.timestamp)

    def decide(self, event: Event) -> list[Decision] | None:
        """``event``'s candidate decisions, its traits merged into the user's profile; None,
        changing nothing, when they would grow the profile past ``MAX_PROFILE_BYTES`` or
        ``MAX_PROFILE_TRAITS``."""
        stored = self._profiles.get(event.user_id) or UserProfile(event.user_id)
        profile = stored.merged(event.user_traits, to_micros(event.timestamp))
        if profile is not stored:
            growth = growth_of(stored.traits, profile.traits, event.user_traits)
            # A profile stored before the limits may stay over them, but not grow.
            names = len(profile.traits)
            if names > MAX_PROFILE_TRAITS and names > len(stored.traits):
                return None
            if growth > 0:
                size = self._sizes.get(event.user_id)
                if size is None:  # read once per batch; then counted by what events add
                    size = json_size(stored.traits)
                if size + growth > MAX_PROFILE_BYTES:
                    return None
                self._sizes[event.user_id] = size + growth
            elif growth < 0 and event.user_id in self._sizes:
                self._sizes[event.user_id] += growth
        self._profiles[event.user_id] = profile
        history = self._history(event)
        candidates = engine.evaluate(event, profile, history, self._ruleset, self._now)
        self._by_user[event.user_id].append(event)
        return candidates

    def profiles_to_store(self) -> list[UserProfile]:
        """The profile of each user with an event decided in this batch, as the batch left
        it, whether its traits changed or not: each is stored (a new user created, every
        one's update time set)."""
        return [self._profiles[user_id] for user_id in self._by_user]

    def _history(self, event: Event) -> list[Event]:
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
