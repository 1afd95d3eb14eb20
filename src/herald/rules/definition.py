"""The rule set: event types with their property schemas, and rules over them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from herald.domain.properties import PropertySpec
from herald.rules.conditions.condition import Condition
from herald.rules.rendering.template_set import TemplateSet

CHANNELS = ("email", "sms", "internal")


class Limit(StrEnum):
    ONCE_PER_USER = "once_per_user"
    ONCE_PER_USER_PER_DAY = "once_per_user_per_day"  # the UTC day of the triggering event
    ONCE_PER_EVENT = "once_per_event"


class Category(StrEnum):
    MARKETING = "marketing"  # needs consent; unsubscribes apply
    TRANSACTIONAL = "transactional"  # about the user's own account; always sent
    INTERNAL = "internal"  # for the team, never for the user


@dataclass(frozen=True, slots=True)
class After:
    """The rule fires only if an ``event_type`` event precedes the trigger by at most
    ``within`` (both ends inclusive: ``anchor <= trigger <= anchor + within``)."""

    event_type: str
    within: timedelta
    span: str  # ``within`` as the rule file wrote it (30m, 24h, 7d), for explanations


@dataclass(frozen=True, slots=True)
class MaxAge:
    """The rule messages about a trigger only while it is at most ``age`` old (by the
    server's clock when it is decided): a message about a payment that failed last
    month, or a welcome a year after the signup, comes too late to help."""

    age: timedelta
    span: str  # as the rule file wrote it (72h, 7d), for explanations


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    trigger: str  # the event type that triggers it
    channel: str
    limit: Limit
    category: Category
    version: str
    condition: Condition | None = None
    after: After | None = None
    max_age: MaxAge | None = None
    template: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    properties: Mapping[str, PropertySpec] = field(default_factory=dict)
    description: str = ""
    # The properties whose declarations the rule file got wrong: reported as such when it
    # loads, and not again as undeclared wherever a rule reads them.
    refused: frozenset[str] = frozenset()
    # The properties declared integer, looked at in every event of this type.
    integers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.properties.values() if p.type == "integer")
        object.__setattr__(self, "integers", names)


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: str
    source: str
    event_types: Mapping[str, EventType]
    rules: tuple[Rule, ...]
    templates: TemplateSet
    # The traits the file declares (name -> type): what conditions and templates may read.
    traits: Mapping[str, str] = field(default_factory=dict)
    # The traits declared integer, looked at in every event that sends traits.
    integer_traits: tuple[str, ...] = field(init=False)
    # Rules by the event type that triggers them and by the one that anchors them: every
    # event asks, so the answers are worked out once.
    _triggered: dict[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    _anchored: dict[str, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        triggered: dict[str, list[Rule]] = {}
        anchored: dict[str, list[Rule]] = {}
        for rule in self.rules:
            triggered.setdefault(rule.trigger, []).append(rule)
            if rule.after:
                anchored.setdefault(rule.after.event_type, []).append(rule)
        integers = tuple(name for name, kind in self.traits.items() if kind == "integer")
        object.__setattr__(self, "integer_traits", integers)
        object.__setattr__(self, "_triggered", {k: tuple(v) for k, v in triggered.items()})
        object.__setattr__(self, "_anchored", {k: tuple(v) for k, v in anchored.items()})

    def triggered_by(self, event_type: str) -> tuple[Rule, ...]:
        """Rules that an event of this type triggers."""
        return self._triggered.get(event_type, ())

    def anchored_on(self, event_type: str) -> tuple[Rule, ...]:
        """Rules whose ``after`` window starts at an event of this type."""
        return self._anchored.get(event_type, ())

    def lifetime_rules(self) -> frozenset[str]:
        """Ids of the rules limited once per user: their messages hold the limit for good,
        so retention must keep them (redacted) however old they are."""
        return frozenset(rule.id for rule in self.rules if rule.limit is Limit.ONCE_PER_USER)
