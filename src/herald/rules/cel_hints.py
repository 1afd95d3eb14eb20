"""What to say of a CEL function a condition calls that Herald's CEL does not have.

cel.dev documents CEL's extensions (`lowerAscii`, `split`, `math.greatest`) and the
timestamp getters given a time zone (`getHours("Europe/Lisbon")`); the CEL library
Herald evaluates with has neither, and its error advises checking the name's spelling,
which is not the mistake.
"""

from __future__ import annotations

import re

_UNDEFINED = re.compile(r"Undefined variable or function: '(\w+)'")
_TIMESTAMP_GETTERS = frozenset(
    {
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)
_NO_STRINGS = (
    "which Herald's CEL does not have (a string has size(), contains(), startsWith(), "
    "endsWith() and matches())"
)
_NO_MATH = "which Herald's CEL does not have (`a > b ? a : b` picks the greater)"
_EXTENSIONS = {
    **dict.fromkeys(
        ["lowerAscii", "upperAscii", "split", "substring", "indexOf", "lastIndexOf", "trim"],
        _NO_STRINGS,
    ),
    **dict.fromkeys(["replace", "join", "charAt", "format", "reverse", "quote"], _NO_STRINGS),
    **dict.fromkeys(["math", "max", "min", "greatest", "least"], _NO_MATH),
}


def explained(said: str) -> str:
    """CEL's error ``said`` (its first line), with CEL's advice replaced by what is so
    when it names a function that cel.dev documents and Herald's CEL lacks."""
    unknown = _UNDEFINED.match(said)
    if unknown is None:
        return said
    name = unknown[1]
    if name in _TIMESTAMP_GETTERS:
        return (
            f"{unknown[0]}: {name}() is a timestamp's, taking no time zone here "
            f"(`timestamp(event.timestamp).{name}()` reads it in UTC)"
        )
    if name in _EXTENSIONS:
        return f"{unknown[0]}: {name} is one of CEL's extensions, {_EXTENSIONS[name]}"
    return said
