"""A response body held to a schema of the app's own OpenAPI document, as a client
generated from that document reads it: the keywords FastAPI writes into response
schemas, no more (no JSON Schema library is among the project's dependencies)."""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, Any] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}
_CHECKED = {
    "$ref", "anyOf", "type", "enum", "const", "properties", "required",
    "additionalProperties", "items", "title", "description", "default", "example",
}  # fmt: skip


def schema_problems(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    """Where ``value`` departs from ``schema`` (references resolved in ``document``), one
    line each; none when it conforms. A keyword this check does not know is a problem
    too, so that a schema it cannot judge is never passed unread."""
    return list(_problems(document, schema, value, "$"))


def _problems(document: dict[str, Any], schema: dict[str, Any], value: Any, at: str) -> Any:
    if unknown := set(schema) - _CHECKED:
        yield f"{at}: keywords this check does not know: {sorted(unknown)}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        yield from _problems(document, document["components"]["schemas"][name], value, at)
    if "anyOf" in schema:
        branches = [list(_problems(document, branch, value, at)) for branch in schema["anyOf"]]
        if all(branches):
            yield f"{at}: {value!r} matches none of {schema['anyOf']}"
    if "type" in schema and not _TYPES[schema["type"]](value):
        yield f"{at}: {value!r} is not of type {schema['type']}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{at}: {value!r} is not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        yield f"{at}: {value!r} is not {schema['const']!r}"
    if isinstance(value, dict):
        yield from _object_problems(document, schema, value, at)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _problems(document, schema["items"], item, f"{at}[{index}]")


def _object_problems(
    document: dict[str, Any], schema: dict[str, Any], value: dict[str, Any], at: str
) -> Any:
    properties = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            yield f"{at}: required field {name!r} is missing"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            yield from _problems(document, properties[name], item, f"{at}.{name}")
        elif extra is False:
            yield f"{at}: field {name!r} is not in the schema"
        elif isinstance(extra, dict):
            yield from _problems(document, extra, item, f"{at}.{name}")
