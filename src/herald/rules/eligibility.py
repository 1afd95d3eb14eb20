"""Whether a rule may message a user at all: their consent to marketing, and a recipient
its channel can send to. Pure functions of the rule and the ``user`` view."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from herald.domain.model import MAX_RECIPIENT, UserProfile
from herald.domain.properties import json_kind
from herald.domain.recipients import (
    INTERNAL_RECIPIENT,
    email_problem,
    mask_recipient,
    phone_problem,
)
from herald.domain.timeutil import from_micros, iso
from herald.rules.definition import Category, Rule

RECIPIENT_TRAIT = {"email": "email", "sms": "phone"}
MARKETING_CHANNELS = frozenset(RECIPIENT_TRAIT)  # the user's own: internal is the team's
_EXAMPLE = {"email": '"maria@example.com"', "phone": '"+351 912 345 678"'}
# What a recipient of each channel must be, and an example of one for the reason.
# Looked up once: an enum member read through its class costs about 900 instructions.
_MARKETING = Category.MARKETING
_UNSUBSCRIBED_FROM = "marketing rule and the user unsubscribed from "
_UNSUBSCRIBED_FROM_ALL = f"{_UNSUBSCRIBED_FROM}all marketing"
_RECIPIENT_SHAPE = {
    "email": (email_problem, "one plain address like maria@example.com"),
    "sms": (phone_problem, "one phone number like +351 912 345 678"),
}


def consent_problem(
    rule: Rule, view: Mapping[str, object], profile: UserProfile | None = None
) -> str | None:
    """Why a marketing ``rule`` may not message this user, or None (and always None for
    a transactional or internal rule). ``profile``, the user's: an unsubscribe of theirs
    through the API that closes the channel is said with when it was made, so that asked
    since when a user has opted out, the audit answers without a message it cancelled."""
    if rule.category is not _MARKETING:
        return None
    closed, why = _closure(view)
    if rule.channel not in closed:
        return None
    if not why:  # an unsubscribe naming channels one by one
        return f"{_UNSUBSCRIBED_FROM}{rule.channel}{_made_at(profile, {rule.channel})}"
    if why == _UNSUBSCRIBED_FROM_ALL:
        return f"{why}{_made_at(profile, set())}"
    return why


def _made_at(profile: UserProfile | None, names: set[str]) -> str:
    """`` at <time>`` when the user's unsubscribe through the API names one of ``names``
    or all marketing and Herald knows when it was made, that unsubscribe's own (not for
    an unsubscribe the trait's alone covers: the trait says all marketing, the API only
    email); else ""."""
    if profile is None or not profile.unsubscribed_times:
        return ""
    when = profile.unsubscribed_since({*names, "marketing", "all"})
    return "" if when is None else f" at {iso(from_micros(when))}"


def closed_to_marketing(traits: Mapping[str, object]) -> frozenset[str]:
    """The channels a user's traits close to marketing, as ``consent_problem`` reads
    them."""
    return _closure(traits)[0]


def _closure(traits: Mapping[str, object]) -> tuple[frozenset[str], str]:
    """The channels ``traits`` close to marketing, and why when they close all of them
    ("" when an unsubscribe names channels one by one)."""
    # A stated opt-in must be true itself: false, null or the string "false" is no consent.
    # An unstated one leaves it to the rule's condition (the bank-link nudge asks for none).
    if "marketing_opt_in" in traits and traits["marketing_opt_in"] is not True:
        said = _shown(traits["marketing_opt_in"])
        why = f"marketing rule and the user has not opted in (marketing_opt_in is {said})"
        return MARKETING_CHANNELS, why
    unsubscribed = traits.get("unsubscribed")
    if unsubscribed is None or unsubscribed is False:
        return frozenset(), ""
    names = _unsubscribed_names(unsubscribed)
    if names is None:
        # An unsubscribe Herald cannot read is still one: ignoring it would send the user
        # what they may have refused. Transactional messages are not held up by it.
        why = (
            f"marketing rule and the user's unsubscribed trait cannot be read "
            f"({_shown(unsubscribed)}; a list "
            'of "email", "sms", "marketing", "all" is): taken as unsubscribed from all marketing'
        )
        return MARKETING_CHANNELS, why
    if "marketing" in names or "all" in names:
        return MARKETING_CHANNELS, _UNSUBSCRIBED_FROM_ALL
    return MARKETING_CHANNELS & names, ""


def _shown(value: object) -> str:
    """A trait's value as the client sent it (JSON), cut short: a reason is stored with
    every decision, and a client's value may be long."""
    return orjson.dumps(value, default=str).decode()[:80]


def closed_now(profile: UserProfile) -> frozenset[str]:
    """The channels closed to marketing for the user as Herald knows them now: by their
    latest traits, or by an unsubscribe through the API."""
    api = profile.unsubscribed
    by_api = MARKETING_CHANNELS if "marketing" in api or "all" in api else MARKETING_CHANNELS & api
    return closed_to_marketing(profile.traits) | by_api


def withdrawing_trait(profile: UserProfile) -> tuple[str, int | None]:
    """The trait that withdraws the user's consent to marketing, when their traits do:
    ``marketing_opt_in`` unless it says yes, else ``unsubscribed``; and the time
    (microseconds) of the event it came from, when known."""
    opted_in = profile.traits.get("marketing_opt_in", True) is True
    name = "unsubscribed" if opted_in else "marketing_opt_in"
    return name, profile.trait_times.get(name)


def closed_by(profile: UserProfile, channel: str) -> str:
    """What closes ``channel`` to marketing for the user, as ``closed_now`` finds it: an
    unsubscribe through the API, with when it was made if known, or a trait with the time
    of the event it came from."""
    api = profile.unsubscribed
    if "marketing" in api or "all" in api or channel in api:
        when = profile.unsubscribed_since({channel, "marketing", "all"})
        since = "" if when is None else f" at {iso(from_micros(when))}"
        return f"they unsubscribed through POST /users/{{id}}/preferences{since}"
    name, when = withdrawing_trait(profile)
    said = _shown(profile.traits.get(name))
    return f"their {name} is {said}" + (
        f", from an event at {iso(from_micros(when))}" if when else ""
    )


def _unsubscribed_names(said: object) -> set[str] | None:
    """The names an ``unsubscribed`` trait lists, in lower case (names of channels Herald
    has not, such as "push", are the app's own and leave Herald's alone); None when it is
    not a list of names."""
    if not isinstance(said, list | tuple) or not all(isinstance(n, str) for n in said):
        return None
    return {name.casefold() for name in said}


def recipient_of(rule: Rule, view: Mapping[str, object]) -> tuple[str | None, str]:
    """(the address the rule's channel sends to, or None and why there is none)."""
    if rule.channel == "internal":
        return INTERNAL_RECIPIENT, ""
    trait = RECIPIENT_TRAIT[rule.channel]
    value = view.get(trait)
    if value is not None and not isinstance(value, str):
        kind = json_kind(value)
        return None, f"no recipient: the {trait} is {kind}, not a string like {_EXAMPLE[trait]}"
    if not value or not value.strip():
        return None, f"no recipient: user has no {trait} for channel {rule.channel}"
    if len(value) > MAX_RECIPIENT:
        return None, f"no recipient: the {trait} is longer than {MAX_RECIPIENT} characters"
    # Decided here, not at send time: the envelope and the headers would each read a
    # value like "ada@example.com, eve@evil.test" their own way.
    problem_of, shape = _RECIPIENT_SHAPE[rule.channel]
    problem = problem_of(value)
    if problem is not None:
        return None, f"no recipient: the {trait} is not {shape} ({problem})"
    return value, ""


def delivery_note(channel: str, recipient: str) -> str:
    """How a triggered decision's reason ends: where the message goes, masked."""
    if channel == "internal":
        return "; internal alert to the team"  # by the provider the rule file gives it
    # Decisions are shown to operators; a hint of the address is enough.
    return f"; {channel} to {mask_recipient(recipient)}"
