"""The declarations of a rule file: its `events` (each type with its property schema) and
its `traits` (what templates may read of a user). Problems go to the caller's list, each
naming the event type, property or trait it is about."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any

from herald.domain.properties import PROPERTY_TYPES, PropertySpec, type_matches
from herald.rules.definition import EventType
from herald.rules.rule_file.keys import did_you_mean

# Event types and rule ids: short identifiers, safe in metrics labels and dedup keys.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# What an event type and a property may declare: a misspelt key (`propertes:`,
# `minimun:`) would otherwise be ignored, and events go unchecked without a word.
EVENT_KEYS = ("description", "properties")
PROPERTY_KEYS = ("type", "required", "minimum", "maximum", "enum")


def read_event_types(raw: Any, problems: list[str]) -> tuple[dict[str, EventType], frozenset[str]]:
    """The declared event types, and the names of those whose declarations are refused as
    a whole: reported here, and not again as the undeclared trigger of each rule on them."""
    if not isinstance(raw, dict) or not raw:
        problems.append(
            "`events` must map each event type to its definition"
            + (", and declares none" if raw in (None, {}) else f", got {raw!r}")
            + " (e.g. `events: {signup_completed: {}}`)"
        )
        return {}, frozenset()
    types = {}
    refused_types = set()
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            problems.append(
                f"event type {name!r}: use 1-64 letters, digits and underscores, "
                "starting with a letter"
            )
            continue
        spec = {} if spec is None else spec
        problem = _event_type_problem(spec)
        if problem:
            problems.append(f"event {name}: {problem}")
            refused_types.add(name)
            continue
        for key in _unknown_keys(spec, EVENT_KEYS):
            problems.append(
                f"event {name}: unknown key `{key}`{did_you_mean(key, EVENT_KEYS)}"
                f" (known: {', '.join(EVENT_KEYS)})"
            )
        props = {}
        refused = set()
        for prop, pspec in (spec.get("properties") or {}).items():
            problem = _property_problem(prop, pspec)
            if problem:
                problems.append(f"event {name}: property {prop}: {problem}")
                refused.add(str(prop))
                continue
            pspec = pspec if isinstance(pspec, dict) else {"type": pspec}
            enum = pspec.get("enum")
            props[prop] = PropertySpec(
                prop,
                pspec["type"],
                bool(pspec.get("required", False)),
                pspec.get("minimum"),
                pspec.get("maximum"),
                tuple(enum) if enum else None,
            )
        description = spec.get("description")
        said = description_problem(description)
        if said:
            problems.append(f"event {name}: {said}")
        types[name] = EventType(name, props, description_text(description), frozenset(refused))
    return types, frozenset(refused_types)


def description_problem(description: Any) -> str | None:
    """What is wrong with a ``description``, free text, if anything: YAML reads `yes`,
    `[beta]` or `{a: b}` as something else than text, which would be shown in Python's
    spelling (``True``, ``['beta']``), and `0x10`, `12:30:00` or `1.50` as a number, which
    would be shown as YAML read it (16, 45000, 1.5), not as written."""
    if description is None or isinstance(description, str):
        return None
    return f"`description` must be text, but YAML read {_yaml_kind(description)}: quote it"


def _yaml_kind(value: Any) -> str:
    """What YAML read ``value`` as, with the value for a number or a date, whose YAML
    spelling may differ from how it was written."""
    kinds = {bool: "a boolean", list: "a list", dict: "a mapping", bytes: "binary data"}
    if type(value) in kinds:
        return kinds[type(value)]
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, datetime):
        return f"a date and time ({value})"
    if isinstance(value, date):
        return f"a date ({value})"
    return "a value of another type"


def description_text(description: Any) -> str:
    """A ``description`` as shown: its text, or none."""
    return description if isinstance(description, str) else ""


def _event_type_problem(spec: Any) -> str | None:
    """What is wrong with an event type's declaration as a whole, if anything: its
    properties are looked at one by one after."""
    if not isinstance(spec, dict):
        return (
            "must be a mapping with an optional `description` and `properties` mapping each "
            f"property to its type (e.g. `properties: {{amount: number}}`), got {spec!r}"
        )
    properties = spec.get("properties") or {}
    if not isinstance(properties, dict):
        return f"`properties` must map each property to its type, got {properties!r}"
    return None


def _property_problem(name: Any, spec: Any) -> str | None:
    """What is wrong with one property's declaration, if anything."""
    if not isinstance(name, str):
        return "the name must be a string"
    spec = spec if isinstance(spec, dict) else {"type": spec}
    unknown = _unknown_keys(spec, PROPERTY_KEYS)
    if unknown:
        # Each of them: fixing one only to be told of the next took a check per key.
        said = [f"unknown key `{key}`{did_you_mean(key, PROPERTY_KEYS)}" for key in unknown]
        return f"{'; '.join(said)} (known: {', '.join(PROPERTY_KEYS)})"
    kind = spec.get("type")
    if kind is None:
        return f"needs a `type`: one of {', '.join(PROPERTY_TYPES)}"
    if not isinstance(kind, str) or kind not in PROPERTY_TYPES:
        return f"`type` must be {_one_of_the_types(kind)}"
    # Not read as truthy: `required: "false"` would make the property required.
    if spec.get("required") is not None and not isinstance(spec["required"], bool):
        return f"`required` must be true or false, got {spec['required']!r}"
    for bound in ("minimum", "maximum"):
        value = spec.get(bound)
        if value is None:
            continue
        if kind not in ("number", "integer"):
            return f"`{bound}` applies to numbers, not to {kind}"
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return f"`{bound}` must be a number, got {value!r}{yaml_text_hint(value)}"
        if math.isinf(value):
            # JSON has no infinity: GET /rules could not show it (a 500), nor an event send it.
            return f"`{bound}` must be a finite number, got {value!r} (leave it out for no bound)"
    low, high = spec.get("minimum"), spec.get("maximum")
    if low is not None and high is not None and low > high:
        return f"`minimum` {low!r} is above `maximum` {high!r}: no value could be sent"
    enum = spec.get("enum")
    if enum is not None and not isinstance(enum, list):
        return "`enum` must be a list of the allowed values"
    if enum == []:
        # Read as no enum at all, it would let every value through.
        return "`enum` is empty: no value could be sent (list the allowed values, or remove it)"
    # A value of another type could never be sent: every event would be refused.
    for value in enum or ():
        if not _is_json(value):
            # No event can send it, and GET /rules could not show it (binary data, NaN and
            # the infinities were a 500) or would show another value (a date as text).
            return (
                f"`enum` value {value!r} is not a JSON value (YAML also reads dates, binary "
                "data, keys that are not text, NaN and infinities): it could never be sent"
            )
        if not type_matches(value, kind):
            hint = _unquoted_text_hint(value) if kind == "string" else yaml_text_hint(value)
            return f"`enum` value {value!r} is not of type {kind}{hint}"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"`enum` value {value!r} is outside `minimum`/`maximum`: it could never be sent"
    return None


# Other languages' names for the types, too unlike them for a misspelling: `int` is
# 0.6 alike `integer`, `str` 0.67 alike `string`.
_TYPES_ELSEWHERE = {
    "str": "string",
    "text": "string",
    "int": "integer",
    "bool": "boolean",
    "float": "number",
    "double": "number",
    "decimal": "number",
    "dict": "object",
    "map": "object",
    "list": "array",
}


def _one_of_the_types(kind: Any) -> str:
    return f"one of {', '.join(PROPERTY_TYPES)}, got {kind!r}{_type_meant(kind)}"


def _type_meant(kind: Any) -> str:
    """``: did you mean `string`?`` naming the type ``kind``, not one, was meant as: one
    spelt near it (`String`, `nummber`), or its name in another language (`int`)."""
    if isinstance(kind, str) and kind.lower() in _TYPES_ELSEWHERE:
        return f": did you mean `{_TYPES_ELSEWHERE[kind.lower()]}`?"
    return did_you_mean(kind, PROPERTY_TYPES)


def _is_json(value: Any) -> bool:
    """Whether ``value`` is what a JSON document could hold, as an event's value is."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return False  # a date, a datetime, bytes, a set: YAML types JSON has not


def yaml_text_hint(value: Any) -> str:
    """Why a number the file holds was read as text, when it was: YAML 1.1 reads an
    exponent without a dot and a sign (``1e9``, ``1.5e3``) as a string, and any number
    in quotes (``"587"``)."""
    if not isinstance(value, str):
        return ""
    try:
        read = float(value)
    except ValueError:
        return ""
    if not math.isfinite(read):  # nan, inf: not a number written with an exponent
        return ""
    if "e" not in value.lower():  # YAML reads any other number as one, unless quoted
        return " (it is in quotes, which make it text: write it without them)"
    return " (YAML reads a number like 1e9 as text: write it in full, or as 1.0e+9)"


def _unquoted_text_hint(value: Any) -> str:
    """Why a value the file holds for a text was read as another type: YAML 1.1 reads
    `yes`, `no`, `on` and `off` as booleans, and digits as a number, unless quoted (an
    answer's `enum: [yes, no]`, a postcode's `enum: [10115]`)."""
    if isinstance(value, bool):
        return (
            " (YAML reads yes, no, on, off, true and false unquoted as true or false: quote"
            ' each value as clients send it, e.g. "yes")'
        )
    if isinstance(value, int | float):
        return " (YAML reads digits unquoted as a number: quote each value as clients send it)"
    return ""


def _unknown_keys(spec: dict[Any, Any], known: tuple[str, ...]) -> list[str]:
    return sorted(str(key) for key in spec if key not in known)


def read_traits(raw: Any, problems: list[str]) -> tuple[dict[str, str], frozenset[str]]:
    """The declared traits (name -> type) templates may read, and the names of those whose
    declarations are refused: reported here, and not again wherever a rule reads them."""
    if raw is None:
        return {}, frozenset()
    if isinstance(raw, list):
        # Names listed without their types: each read of one is right but for the type,
        # and is not said again as undeclared.
        problems.append(
            "`traits` must map each trait to its type, not list the names:"
            " write `email: string` rather than `- email`"
        )
        return {}, frozenset(str(name) for name in raw if isinstance(name, str | int | float))
    if not isinstance(raw, dict):
        problems.append("`traits` must map each trait to its type")
        return {}, frozenset()
    traits = {}
    refused = set()
    for name, kind in raw.items():
        problem = _trait_problem(name, kind)
        if problem:
            problems.append(f"trait {name}: {problem}")
            refused.add(str(name))
            continue
        traits[name] = kind
    return traits, frozenset(refused)


# The traits Herald reads itself, with the type it reads them as. Declared as another
# type, conditions and templates would be checked against values Herald never accepts
# (`marketing_opt_in: string` and `user.marketing_opt_in == "yes"`: consent asks for true).
HERALD_TRAITS = {
    "email": ("string", "the email channel's recipient"),
    "phone": ("string", "the sms channel's recipient"),
    "marketing_opt_in": ("boolean", "marketing is sent only when it is true"),
    "timezone": ("string", "an IANA zone name, for quiet hours"),
    "unsubscribed": ("array", "the channels the user unsubscribed from"),
}


def _trait_problem(name: Any, kind: Any) -> str | None:
    """What is wrong with one trait's declaration, if anything."""
    if not isinstance(name, str):
        return "the name must be a string"
    if kind is None:
        return f"needs a type: one of {', '.join(PROPERTY_TYPES)}"
    if isinstance(kind, dict) and kind.get("type") in PROPERTY_TYPES:
        # A property's form, `{type: string}`: a trait takes its type alone (all are
        # optional, and a client's traits are not refused for their values).
        return f"a trait takes its type alone: write `{name}: {kind['type']}`"
    if not isinstance(kind, str) or kind not in PROPERTY_TYPES:
        return f"the type must be {_one_of_the_types(kind)}"
    if name == "id":
        # Conditions and templates see the user's id there, whatever a trait says.
        return "`user.id` is the user's id (the event's user_id), not a trait: name it otherwise"
    herald_spelling = name.lower()
    if name not in HERALD_TRAITS and herald_spelling in HERALD_TRAITS:
        # Traits are case-sensitive: a client sending `Email` gives Herald no recipient,
        # and a rule reading `user.Email` would read what Herald never does.
        meaning = HERALD_TRAITS[herald_spelling][1]
        return (
            f"Herald reads the trait `{herald_spelling}` ({meaning}), in lower case: "
            f"declare `{herald_spelling}`, and have clients send it so"
        )
    if name in HERALD_TRAITS and kind != HERALD_TRAITS[name][0]:
        read_as, meaning = HERALD_TRAITS[name]
        article = "an" if read_as[0] in "aeiou" else "a"
        return f"Herald reads it as {article} {read_as} ({meaning}): declare `{name}: {read_as}`"
    return None
