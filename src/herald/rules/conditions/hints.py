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


# What other languages write where CEL writes something else, found outside strings and
# comments: SQL's and Python's words (`and`, `not`, `is`), an assignment's `=` or
# JavaScript's `===` for a comparison, SQL's `<>`, Python's `True` and `None`, and a
# `#` comment, which YAML takes out of a plain value but leaves in a quoted or block one.
# CEL's parser names only the token it stopped at and the tokens it expected there.
_STRING_OR_COMMENT = re.compile(
    r'"""[\s\S]*?"""|' r"'''[\s\S]*?'''|" r'"(?:\\.|[^"\\\n])*"|' r"'(?:\\.|[^'\\\n])*'|//[^\n]*"
)
_OTHER_SYNTAX = (
    (
        re.compile(r"(?<![\w.])(?:and|or|not)(?!\w)", re.IGNORECASE),
        "CEL writes and, or and not as `&&`, `||` and `!`",
    ),
    (re.compile(r"(?<![=!<>])=(?!=)|===|<>|(?<![\w.])is(?!\w)"), "CEL compares with `==` and `!=`"),
    (
        re.compile(r"(?<![\w.])(?:True|False|None|TRUE|FALSE|NULL|Null)(?!\w)"),
        "CEL writes `true`, `false` and `null`, in lower case",
    ),
    (
        re.compile(r"#"),
        "a comment in a condition starts with `//`: YAML reads `#` as its own only outside"
        " quotes and block scalars (`|`, `>`)",
    ),
)


def other_syntax(source: str) -> str:
    """How CEL writes what ``source``, a condition that does not compile or reads an
    unknown variable, wrote as another language does (on a line of its own, in
    parentheses); empty when it wrote nothing so."""
    code = _STRING_OR_COMMENT.sub('""', source)
    said = [hint for found, hint in _OTHER_SYNTAX if found.search(code)]
    return f"\n({'; '.join(said)})" if said else ""
