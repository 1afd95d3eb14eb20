"""Values the rule engine reads and writes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

import orjson

from herald.domain.immutable import immutable
from herald.domain.timeutil import iso

# Longest stored values (the database refuses longer ones).
MAX_RECIPIENT = 320  # an address or phone number, from the user's traits
MAX_DEDUP_KEY = 300


@immutable
class Event:
    """A behavioural event, validated and normalised (timestamp in UTC)."""

    event_id: str
    user_id: str
    event_type: str
    timestamp: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    user_traits: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Hash of the payload, to tell a retry (same) from a conflicting reuse of an id.
        Numbers count by their value, as in JSON: a retry that writes 10.0 as 10 (as
        JavaScript does) is the same event."""
        canonical = orjson.dumps(
            [
                self.user_id,
                self.event_type,
                iso(self.timestamp),
                _by_value(self.properties),
                _by_value(self.user_traits),
            ],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.blake2b(canonical, digest_size=16).hexdigest()

    def as_context(self) -> dict[str, Any]:
        """The ``event`` variable seen by rule conditions and templates. A property sent
        as null is left out: a null is no value (a required one is refused as missing),
        so a condition's `has()` and a template's `default` treat it as absent."""
        properties = self.properties
        # A copy all the same, the event's own being stored after the templates read it.
        # Without a null, the usual event, it is told and copied in C, not in a Python
        # comprehension: with the user view's alike, 5,600 instructions less an event.
        if None in properties.values():
            kept = {k: v for k, v in properties.items() if v is not None}
        else:
            kept = dict(properties)
        return {
            "id": self.event_id,
            "type": self.event_type,
            "user_id": self.user_id,
            "timestamp": iso(self.timestamp),
            "properties": kept,
        }


_AS_IS = frozenset({str, int, bool, type(None)})


def _by_value(value: Any) -> Any:
    """``value`` with each whole float as an int (10.0 as 10, -0.0 as 0), over the whole
    range of integers an event may hold, signed and unsigned 64 bits: -2**63 and
    2**63..2**64-1 sent again as floats were a conflict with themselves."""
    kind = type(value)  # JSON's own types only: what the API hands over
    if kind is dict:
        return {k: v if type(v) in _AS_IS else _by_value(v) for k, v in value.items()}
    if kind is float:
        return int(value) if value.is_integer() and -(2**63) <= value < 2**64 else value
    if kind is list:
        return [_by_value(item) for item in value]
    return value


def derived_event_id(user_id: str, event_type: str, timestamp: datetime) -> str:
    """The idempotency key of an event sent without ``event_id``."""
    digest = hashlib.sha256(f"{user_id}\x1f{event_type}\x1f{iso(timestamp)}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


# The names of an `unsubscribed` trait that Herald reads itself, in any case (the API
# stores them in lower case): a rule's condition sees them as Herald does.
_HERALD_UNSUBSCRIBE_NAMES = frozenset({"email", "sms", "marketing", "all"})


def _herald_names_lowered(said: list[Any]) -> list[Any]:
    """``said``, an ``unsubscribed`` trait's list, with Herald's names in lower case, each
    once: ``["EMAIL", "Push"]`` is ``["email", "Push"]``, so that a condition's
    ``"email" in user.unsubscribed`` holds where Herald's own consent check does. The
    app's other names (``Push``) and anything else the list holds stay as they are."""
    if not any(
        type(item) is str
        and item not in _HERALD_UNSUBSCRIBE_NAMES
        and item.casefold() in _HERALD_UNSUBSCRIBE_NAMES
        for item in said
    ):
        return said  # the usual list, already as Herald writes it
    lowered: list[Any] = []
    for item in said:
        if type(item) is str and item.casefold() in _HERALD_UNSUBSCRIBE_NAMES:
            item = item.casefold()
            if item in lowered:
                continue
        lowered.append(item)
    return lowered


@immutable
class UserProfile:
    """What Herald knows about a user: traits, each stamped with the event time it came from."""

    user_id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    trait_times: Mapping[str, int] = field(default_factory=dict)
    # The user's events before this moment (event time, microseconds) were pruned.
    pruned_before_us: int | None = None
    # Channels (or "marketing") the user unsubscribed from through Herald's API. Kept
    # apart from the traits, which the app's events overwrite: an event cannot undo it.
    unsubscribed: frozenset[str] = frozenset()
    # When the user was last forgotten at their request (microseconds), if ever.
    forgotten_us: int | None = None
    # When each name of ``unsubscribed`` was unsubscribed from through the API
    # (microseconds), by name; absent when Herald did not keep the time.
    unsubscribed_times: Mapping[str, int] = field(default_factory=dict)

    def merged(self, traits: Mapping[str, Any], at_micros: int) -> UserProfile:
        """Merge traits from an event at ``at_micros``; the later event time wins per trait.

        Ties go to the newer arrival, so a corrected resend of the same event updates.
        The result is independent of arrival order for distinct event times.
        """
        if not traits:
            return self
        new_traits = dict(self.traits)
        new_times = dict(self.trait_times)
        for key, value in traits.items():
            if at_micros >= new_times.get(key, -(2**62)):
                new_traits[key] = value
                new_times[key] = at_micros
        return UserProfile(
            self.user_id,
            new_traits,
            new_times,
            self.pruned_before_us,
            self.unsubscribed,
            self.forgotten_us,
            self.unsubscribed_times,
        )

    def unsubscribed_since(self, names: AbstractSet[str]) -> int | None:
        """When the earliest of the user's unsubscribes through the API from any of
        ``names`` was made (microseconds), or None when they made none, or Herald did
        not keep its time: each channel has its own, so that the email unsubscribe of
        Monday is not said to be Tuesday's, when sms was added."""
        known = [when for name, when in self.unsubscribed_times.items() if name in names]
        return min(known) if known else None

    def seen_by(self, event: Event) -> dict[str, Any]:
        """The ``user`` variable for a rule about ``event``: the profile overlaid with the
        event's own traits, so a decision depends on what the event said, not on what
        arrived before it. When the user unsubscribed through the API, ``unsubscribed``
        holds those channels and the names the app's trait listed, together: either one
        stops marketing; with neither, it is an empty list."""
        view = dict(self.traits)
        view.update(event.user_traits)
        view["id"] = self.user_id
        said = view.get("unsubscribed")
        if type(said) is list and said:
            said = view["unsubscribed"] = _herald_names_lowered(said)
        if self.unsubscribed:
            if said is None or said is False or type(said) is list:
                # The trait's names join the API's; what else a list holds is for the
                # consent check to judge, so it stays.
                extra = [
                    item
                    for item in said or ()
                    if not (isinstance(item, str) and item in self.unsubscribed)  # [] is unhashable
                ]
                view["unsubscribed"] = sorted(self.unsubscribed) + extra
            # A trait in any other shape is left as it is: the consent check reads it as an
            # unsubscribe from all marketing, which covers what the API holds too.
        elif view.get("unsubscribed") is None:
            # Neither source holds any (a trait sent as null holds none): `"email" in
            # user.unsubscribed` is false, rather than an error that skips every user who
            # never unsubscribed.
            view["unsubscribed"] = []
        return view


class Outcome(StrEnum):
    TRIGGERED = "triggered"  # a message was created
    SUPPRESSED = "suppressed"  # a limit blocked it: another message holds the dedup key
    # A condition, window, consent or recipient did not hold; or the rule could not act:
    # the event predates the user's pruned history, an anchor found more triggers than it
    # decides, or the message could not be rendered.
    SKIPPED = "skipped"


@immutable
class MessageDraft:
    """A message a triggered decision asks for; the service renders and stores it."""

    message_id: str
    dedup_key: str
    channel: str
    recipient: str
    trigger: Event
    limit: str
    # What held (the window, the condition; empty for a rule with neither): a suppression
    # repeats it before its limit.
    why: str
    # The ``event`` and ``user`` the rule's condition saw: the message is rendered from
    # them, so it says what the decision was made on.
    event_view: Mapping[str, Any]
    user_view: Mapping[str, Any]


@immutable
class Decision:
    """The verdict of one rule on one event, with the reason a person can read."""

    rule: str
    rule_version: str
    outcome: Outcome
    reason: str
    message_id: str | None = None
    dedup_key: str | None = None
    draft: MessageDraft | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "rule_version": self.rule_version,
            # str() of a StrEnum member is its value: ``.value`` is a property, run in Python.
            "outcome": str(self.outcome),
            "reason": self.reason,
        }
        if self.message_id is not None:
            out["message_id"] = self.message_id
        if self.dedup_key is not None:
            out["dedup_key"] = self.dedup_key
        return out


# Remembered for the last few thousand keys: a batch works out each message's id three
# times (deciding, looking up the keys held, checking the row before it is written), and
# each cost about 4,500 instructions.
@lru_cache(maxsize=4096)
def message_id_for(dedup_key: str) -> str:
    """Message ids derive from the dedup key: the same decision always names the same message."""
    return "msg_" + hashlib.blake2b(dedup_key.encode(), digest_size=12).hexdigest()
