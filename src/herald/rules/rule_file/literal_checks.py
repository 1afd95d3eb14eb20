"""What a condition's literals decide alone: a declared value compared for equality with
a literal it can never equal, and a conversion of a literal that never reads.

CEL finds values of different types unequal without an error (``user.age == "18"`` with
an integer age is false), and a property holds only its declared ``enum`` values (so
``failure_reason == "INSUFICIENT_FUNDS"`` never holds). The samples a condition is tried
on cannot see either: the condition evaluates, to false, and every event would skip the
rule with a reason that looks like any other. Likewise ``duration("7d")`` (CEL's
durations stop at hours) or ``timestamp("2025-11-01")`` (a date alone): the error depends
on no event's value, yet the samples leave it to the events, as they do ``int(user.code)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import cel

from herald.rules.definition import EventType

_PATH = r"(?:event\.properties|user)\.[A-Za-z_]\w*"
_LITERAL = r"true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\"[^\"\\\n]*\"|'[^'\\\n]*'"
# What may stand on either side of a comparison for it to be one of the expression's
# own, not a part of a sum (`1 + user.age == 2`) or of a negation (`!user.vip == true`).
_START = r"(?:^|(?<=[(\[,?:])|(?<=&&)|(?<=\|\|))\s*"
_END = r"\s*(?=$|[),?:]|&&|\|\|)"
_COMPARISONS = (
    re.compile(rf"{_START}(?P<path>{_PATH})\s*(?P<op>==|!=)\s*(?P<literal>{_LITERAL}){_END}"),
    re.compile(rf"{_START}(?P<literal>{_LITERAL})\s*(?P<op>==|!=)\s*(?P<path>{_PATH}){_END}"),
)
# `path in [literal, ...]`, whose items are each compared for equality.
_IN_LIST = re.compile(
    rf"{_START}(?P<path>{_PATH})\s+in\s+\[(?P<items>\s*(?:{_LITERAL})"
    rf"(?:\s*,\s*(?:{_LITERAL}))*\s*,?\s*)\]{_END}"
)
_ITEM = re.compile(_LITERAL)
_QUOTED = r'"""[\s\S]*?"""|' r"'''[\s\S]*?'''|"
# CEL's string literals, which may hold text such as "user.x" that reads nothing.
STRING_LITERAL = re.compile(_QUOTED + r'"(?:\\.|[^"\\\n])*"|' r"'(?:\\.|[^'\\\n])*'")
# A string literal as CEL reads it, or a `//` comment to the end of its line: a `//`
# inside a string is text, and a quote inside a comment too. In a raw string (r"...") a
# backslash escapes nothing.
_STRING_OR_COMMENT = re.compile(
    rf"(?<![\w.])(?:[bB]?[rR]|[rR][bB])(?:{_QUOTED}\"[^\"\n]*\"|'[^'\n]*')"
    rf"|(?:(?<![\w.])[bB])?(?:{STRING_LITERAL.pattern})"
    r"|(?P<comment>//[^\n]*)"
)
# The kind of literal each declared type can equal; objects and arrays equal none.
_COMPARABLE = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean"}
_WRITE_AS = {
    "string": "write it in quotes",
    "number": "write it as a number, without quotes",
    "boolean": "write true or false, without quotes",
}


def never_equal(source: str, event_type: EventType, traits: Mapping[str, str]) -> list[str]:
    """What is wrong with each comparison in ``source`` of a declared property or trait
    with a literal it can never equal: of another type, a fraction for an integer, or
    outside the property's ``enum``."""
    problems = []
    for path, op, text in _comparisons(source):
        value, kind = _literal(text)
        always = f"`{op}` is always {'false' if op == '==' else 'true'}"
        if op == "in":
            always = "`in` never matches it"
        if path.startswith("user."):
            declared, allowed = traits.get(path.removeprefix("user.")), None
        else:
            spec = event_type.properties.get(path.removeprefix("event.properties."))
            declared, allowed = (spec.type, spec.enum) if spec else (None, None)
        if declared is None:
            continue
        if kind == "null":
            # A value sent as null is no value to a condition, as one left out: either
            # fails the comparison, and so `== null` never holds (`!= null` holds as has()).
            if op == "!=":
                continue
            problems.append(
                f"compares {path} with null, which it never holds (a value sent as null is "
                f"no value to a condition, as one left out): test !has({path}) instead"
            )
        elif _COMPARABLE.get(declared) != kind:
            fix = _WRITE_AS.get(
                _COMPARABLE.get(declared, ""), "compare it with a value of its type"
            )
            problems.append(
                f"compares {path}, which the rule file declares {with_article(declared)}, "
                f"with the {kind} {text}: CEL finds values of different types unequal, so "
                f"{always} ({fix})"
            )
        elif declared == "integer" and type(value) is float and not value.is_integer():
            problems.append(
                f"compares {path}, which the rule file declares an integer, with {text}, "
                f"which no integer equals, so {always}"
            )
        elif allowed is not None and not any(_same(value, item) for item in allowed):
            listed = ", ".join(_shown(item) for item in allowed)
            problems.append(
                f"compares {path} with {text}, which is not one of the values its `enum` "
                f"allows ({listed}), so {always}"
            )
    return problems


# A conversion whose argument is a literal: what it gives is the same for every event.
_CONVERSION = re.compile(
    r"(?<![\w.])(?P<call>(?P<function>timestamp|duration|int|uint|double)\(\s*"
    r"(?:\"[^\"\\\n]*\"|'[^'\\\n]*')\s*\))"
)
_READS_AS = {
    "timestamp": "a timestamp is a date, a time and an offset: 2025-11-01T00:00:00Z",
    "duration": "a duration is in h, m, s, ms, us or ns: 168h for 7 days",
}


def unreadable_literals(source: str) -> list[str]:
    """What is wrong with each conversion in ``source`` of a literal CEL cannot read
    (``duration("7d")``), which would fail on every event."""
    problems = []
    source = without_comments(source)
    literals = [match.span() for match in STRING_LITERAL.finditer(source)]
    for match in _CONVERSION.finditer(source):
        if any(begin < match.start() < end for begin, end in literals):
            continue
        try:
            cel.evaluate(match["call"], {})
        except Exception as exc:  # what the CEL library raises varies with the mistake
            said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            said = said.split(". Check function arguments")[0]
            hint = _READS_AS.get(match["function"])
            problems.append(
                f"has {match['call']}, which CEL cannot read ({said})"
                + (f": {hint}" if hint else "")
            )
    return problems


def without_comments(source: str) -> str:
    """``source`` with each of its ``//`` comments blanked out, as CEL reads it; every
    other character (a ``//`` inside a string too) where it was."""
    return _STRING_OR_COMMENT.sub(
        lambda match: " " * len(match[0]) if match["comment"] else match[0], source
    )


def _comparisons(source: str) -> Iterator[tuple[str, str, str]]:
    """Each ``path op literal`` (or ``literal op path``) comparison in ``source``, outside
    its string literals and comments."""
    source = without_comments(source)
    literals = [match.span() for match in STRING_LITERAL.finditer(source)]
    for pattern in _COMPARISONS:
        for match in pattern.finditer(source):
            start = match.start("path")
            if any(begin < start < end for begin, end in literals):
                continue
            yield match["path"], match["op"], match["literal"]
    for match in _IN_LIST.finditer(source):
        if not any(begin < match.start("path") < end for begin, end in literals):
            yield from ((match["path"], "in", item[0]) for item in _ITEM.finditer(match["items"]))


def _literal(text: str) -> tuple[Any, str]:
    if text in ("true", "false"):
        return text == "true", "boolean"
    if text == "null":
        return None, "null"
    if text[0] in "\"'":
        return text[1:-1], "string"
    return (float(text) if any(c in text for c in ".eE") else int(text)), "number"


def _same(literal: Any, allowed: Any) -> bool:
    # 2 and 2.0 are one value to CEL, as to JSON; True is not 1.
    numbers = (int, float)
    same_kind = type(literal) is type(allowed) or (
        type(literal) in numbers and type(allowed) in numbers
    )
    return same_kind and literal == allowed


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def with_article(kind: str) -> str:
    """``kind`` (a type's name) after its article: ``an integer``, ``a string``."""
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
