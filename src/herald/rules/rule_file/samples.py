"""Samples of what a rule sees, for checking its condition and template before anything is
sent, and the words for a name a check found undeclared."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from copy import copy
from typing import Any

from herald.rules.definition import EventType
from herald.rules.rule_file.keys import ALIKE

# What every event holds, whatever its type, as conditions and templates see it.
EVENT_FIELDS = {
    "id": "string",
    "type": "string",
    "user_id": "string",
    "timestamp": "string",
    "properties": "object",
}

_SAMPLES: dict[str, Any] = {
    "string": "sample",
    "number": 1.5,
    "integer": 1,
    "boolean": True,
    "object": {},
    "array": [],
}
# A number property holds 10 as well as 10.5, as the client sent it; CEL reads the first
# as an int and the second as a double, and does not mix them in arithmetic.
_WHOLE_NUMBERS = {**_SAMPLES, "number": 1}


def sample_context(
    event_type: EventType, traits: Mapping[str, str], *, whole_numbers: bool = False
) -> dict[str, Any]:
    """A render context with every declared property and trait present: a template that
    renders against it refers only to names the rule file declares. Number values are
    1.5, or 1 with ``whole_numbers``; each object and array is the sample's own, empty."""
    samples = _WHOLE_NUMBERS if whole_numbers else _SAMPLES
    return {
        "event": {
            "id": "evt_sample",
            "type": event_type.name,
            "user_id": "u_sample",
            "timestamp": "2025-01-01T00:00:00Z",
            "properties": {
                name: copy(samples[spec.type]) for name, spec in event_type.properties.items()
            },
        },
        "user": {
            "id": "u_sample",
            **{name: copy(samples.get(t, "sample")) for name, t in traits.items()},
        },
    }


def path_in(sample: Mapping[str, Any], owner: Any, name: Any) -> str | None:
    """How a rule wrote a read of ``name`` from ``owner``: ``user.x``, ``event.x`` or
    ``event.properties.x`` when ``owner`` is one of those parts of ``sample`` (whose names
    the rule file declares); None for anything else, such as the value of an object
    property, whose keys are the client's."""
    if not isinstance(name, str):
        return None
    event = sample["event"]
    for path, part in (("user", sample["user"]), ("event", event)):
        if owner is part:
            return f"{path}.{name}"
    return f"event.properties.{name}" if owner is event["properties"] else None


def undeclared(
    path: str,
    event_type: EventType,
    traits: Collection[str],
    alternative: str = "",
    anchor: EventType | None = None,
) -> str:
    """``path`` (as ``path_in`` gives it), a name the samples lack, and how to declare it;
    ``alternative`` is added to the advice (e.g. ", or test it first with ..."). A property
    the rule's ``anchor`` (its `after` event type) declares is said to be that event's; a
    declared name ``path`` looks mistyped from is named first."""
    if path.startswith("user."):
        meant = _meant(path, event_type, traits)
        declare = "or declare" if meant else "declare"
        return (
            f"{path}, which the rule file does not declare{meant}"
            f" ({declare} it under traits:{alternative})"
        )
    if path.startswith("event.properties."):
        name = path.removeprefix("event.properties.")
        anchored = ""
        meant = ""
        if anchor is not None and name in anchor.properties:
            anchored = (
                f"{name} is a property of {anchor.name}, the rule's `after` event, but a"
                f" rule's condition and template read its trigger's event alone; "
            )
        else:
            meant = _meant(path, event_type, traits)
        declare = "or declare" if meant else "declare"
        return (
            f"{path}, which the rule file does not declare for {event_type.name} events{meant} "
            f"({anchored}{declare} it under events: {event_type.name}: properties:{alternative})"
        )
    fields = list(EVENT_FIELDS)
    return (
        f"{path}, which no event has (an event has {', '.join(fields[:-1])} and {fields[-1]})"
        f"{_meant(path, event_type, traits)}"
    )


def _meant(path: str, event_type: EventType, traits: Collection[str]) -> str:
    """``: did you mean PATH?`` naming the declared name ``path`` looks like a slip from:
    the same name read from another part (`event.amount` for a property, a trait read
    from the properties), else a close spelling of one of its own part's; empty when none
    is."""
    name = path.rpartition(".")[2]
    declared = _declared(event_type, traits)
    same = [other for other, its in declared.items() if its == name and other != path]
    if same:
        return f": did you mean {same[0]}?"
    close = misspelt_from(path, event_type, traits)
    return f": did you mean {close}?" if close else ""


# How alike a name tested for (or given a default) must be to a declared one to be taken
# for it misspelt: more than a name read bare, as one tested for is often another on
# purpose (`user.first_name_local | default(user.first_name)`, 0.77 alike; `firstname`,
# 0.95).
MISSPELT = 0.85


def declare_under(path: str, event_type: EventType) -> str:
    """Where the rule file declares ``path``: under traits, or its event type's properties."""
    if path.startswith("user."):
        return "traits:"
    return f"events: {event_type.name}: properties:"


def misspelt_from(
    path: str, event_type: EventType, traits: Collection[str], alike: float = ALIKE
) -> str | None:
    """The declared name of ``path``'s own part (``user``, ``event.properties``) whose
    spelling ``path``'s is at least ``alike`` close to (``user.firstname``:
    ``user.first_name``), if any."""
    owner, _, name = path.rpartition(".")
    own = {
        its.lower(): other
        for other, its in _declared(event_type, traits).items()
        if other.rpartition(".")[0] == owner and other != path
    }
    close = difflib.get_close_matches(name.lower(), own, n=1, cutoff=alike)
    return own[close[0]] if close else None


def unknown_name(name: str, event_type: EventType, traits: Collection[str]) -> str:
    """What to say of ``name``, read alone by a template (``{{ first_name }}``, as other
    tools print a trait), with the declared name it is, or looks like, if any."""
    return (
        f"{name}, which a template does not have (it has user, with the traits, and event,"
        f" with the properties under event.properties){meant_alone([name], event_type, traits)}"
    )


def meant_alone(names: Collection[str], event_type: EventType, traits: Collection[str]) -> str:
    """``: did you mean user.first_name?`` naming where each of ``names``, read alone (not
    from ``user`` or ``event``), is declared, or the declared name it looks like; empty
    when none is anywhere."""
    declared = _declared(event_type, traits)
    by_name = {its.lower(): path for path, its in declared.items()}
    by_name.setdefault("properties", "event.properties")
    meant = []
    for name in names:
        same = [path for path, its in declared.items() if its == name]
        close = same or difflib.get_close_matches(name.lower(), by_name, n=1, cutoff=ALIKE)
        if close:
            meant.append(same[0] if same else by_name[close[0]])
    return f": did you mean {', '.join(meant)}?" if meant else ""


def _declared(event_type: EventType, traits: Collection[str]) -> dict[str, str]:
    """Each name a rule on ``event_type`` may read, by its path: the traits first, as a
    name read alone is most often one."""
    return {
        "user.id": "id",
        **{f"user.{trait}": trait for trait in traits},
        **{f"event.properties.{prop}": prop for prop in event_type.properties},
        **{f"event.{field}": field for field in EVENT_FIELDS},
    }


def is_refused(path: str, event_type: EventType, refused_traits: frozenset[str]) -> bool:
    """Whether ``path`` reads a property or a trait whose declaration is refused (and
    said so)."""
    if path.startswith("user."):
        return path.removeprefix("user.") in refused_traits
    prefix = "event.properties."
    return path.startswith(prefix) and path.removeprefix(prefix) in event_type.refused
