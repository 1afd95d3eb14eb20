"""Validation of event properties against the schema declared in the rule file."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PROPERTY_TYPES = ("string", "number", "integer", "boolean", "object", "array")


@dataclass(frozen=True, slots=True)
class PropertySpec:
    name: str
    type: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class FieldError:
    loc: tuple[str, ...]
    msg: str


# The exact Python types orjson and pydantic parse each JSON type into (a bool is not a
# number: JSON keeps them apart). A set lookup of ``type(value)``: the per-render check.
PYTHON_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "number": frozenset({int, float}),
    "integer": frozenset({int}),
    "boolean": frozenset({bool}),
    "object": frozenset({dict}),
    "array": frozenset({list}),
}


_KIND_OF = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list"}


def json_kind(value: Any) -> str:
    """What JSON calls ``value``, as a sentence says it: "a number", "an object", "null"."""
    if value is None:
        return "null"
    return _KIND_OF.get(type(value), "an object")


def type_matches(value: Any, type_name: str) -> bool:
    """Whether ``value`` is of the JSON type ``type_name`` names (``PROPERTY_TYPES``)."""
    # bool is an int in Python; JSON keeps them apart, and so do we.
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or _whole(value)
    if type_name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    return isinstance(value, list)


def _whole(value: Any) -> bool:
    """Whether ``value`` is a float with no fraction (``3.0``): an integer to JSON Schema,
    and how a client whose numbers are all doubles may write one. In the range an integer
    sent as such may take, signed and unsigned 64 bits."""
    return type(value) is float and value.is_integer() and -(2**63) <= value < 2**64


def with_integers(properties: Mapping[str, Any], integers: Iterable[str]) -> Mapping[str, Any]:
    """``properties`` (or traits) with each of the ``integers`` sent as ``3.0`` made ``3``:
    a condition then compares it, or adds to it, as the integer it was declared (CEL keeps
    the two apart, and refuses ``3.0 + 1``). Any other value is left as it is."""
    fixed: dict[str, Any] | None = None
    for name in integers:
        value: Any = properties.get(name)
        if _whole(value):
            fixed = fixed if fixed is not None else dict(properties)
            fixed[name] = int(value)
    return properties if fixed is None else fixed


def validate_properties(
    properties: Mapping[str, Any], specs: Mapping[str, PropertySpec]
) -> list[FieldError]:
    """Errors of ``properties`` against ``specs``; undeclared properties are kept as they are."""
    errors: list[FieldError] = []
    for spec in specs.values():
        loc = ("properties", spec.name)
        if spec.name not in properties or properties[spec.name] is None:
            if spec.required:
                # A null is no value, but told "field required" a client that sent the
                # field would look for a misspelling.
                said = (
                    "" if spec.name not in properties else f" (got null, which is no {spec.type})"
                )
                errors.append(FieldError(loc, f"field required{said}"))
            continue
        value = properties[spec.name]
        if not type_matches(value, spec.type):
            errors.append(FieldError(loc, f"must be of type {spec.type}, got {_json(value)}"))
            continue
        if spec.minimum is not None and value < spec.minimum:
            errors.append(FieldError(loc, f"must be >= {_json(spec.minimum)}, got {_json(value)}"))
        if spec.maximum is not None and value > spec.maximum:
            errors.append(FieldError(loc, f"must be <= {_json(spec.maximum)}, got {_json(value)}"))
        if spec.enum is not None and not _in_enum(value, spec.enum):
            allowed = ", ".join(_json(item) for item in spec.enum)
            errors.append(FieldError(loc, f"must be one of {allowed}, got {_json(value)}"))
    return errors


def _in_enum(value: Any, allowed: tuple[Any, ...]) -> bool:
    """Whether ``value`` is one of ``allowed`` as JSON sees it: inside an array or an
    object ``true`` is not ``1``, as Python's ``==`` would have it (a scalar's type is
    already checked against the property's)."""
    if not isinstance(value, list | dict):
        return value in allowed
    return any(_same_json(value, item) for item in allowed)


def _same_json(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same_json(a[key], b[key]) for key in a)
        )
    return a == b  # numbers (1 is 1.0 in JSON), strings, null


def _json(value: Any) -> str:
    """``value`` as the client wrote it (``true``, ``"lots"``), not as Python does, cut short."""
    try:
        return json.dumps(value, ensure_ascii=False)[:80]
    except (TypeError, ValueError):
        return repr(value)[:80]
