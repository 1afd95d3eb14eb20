"""A fast path for the commonest condition, one field compared with a literal.

``event.properties.attempt_number >= 3`` is most rules' whole condition, and handing its
inputs to the CEL library costs far more than the comparison itself. When the field holds
a value of the literal's own type, the comparison means the same in Python as in CEL
(integers within 64 bits, finite doubles, strings by code point, booleans for
equality), so it
is made here. Anything else (a missing field, mixed types, a larger expression) goes to
the CEL program, so the answer and the error are always CEL's own.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_INT64 = (-(2**63), 2**63)
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FORM = re.compile(
    r"^\s*(?P<path>(?:event|user)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*"
    r"(?P<op>==|!=|<=|>=|<|>)\s*"
    r'(?P<literal>true|false|-?\d+\.\d+(?:[eE][+-]?\d+)?|-?\d+|"[^"\\]*")\s*$'
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """``path op literal``; ``decide`` answers True/False, or None for "ask CEL"."""

    path: str
    compare: Callable[[Any, Any], bool]
    literal: Any
    equality_only: bool

    def decide(self, value: Any) -> bool | None:
        literal = self.literal
        if type(value) is not type(literal):
            return None  # mixed types: CEL's own rules (and errors) apply
        if type(value) is int and not _INT64[0] <= value < _INT64[1]:
            return None
        if type(value) is bool and not self.equality_only:
            return None
        if type(value) is float and not math.isfinite(value):
            return None  # CEL refuses to order NaN and treats infinities its own way
        return self.compare(value, literal)


def parse_comparison(source: str) -> Comparison | None:
    """The comparison ``source`` is, or None if it is anything else."""
    match = _FORM.match(source)
    if match is None:
        return None
    text = match["literal"]
    literal: Any
    if text in ("true", "false"):
        literal = text == "true"
    elif text.startswith('"'):
        literal = text[1:-1]
    elif "." in text:
        literal = float(text)
    else:
        literal = int(text)
        if not _INT64[0] <= literal < _INT64[1]:
            return None
    op = match["op"]
    path = match["path"]
    return Comparison(
        path=path,
        compare=_OPERATORS[op],
        literal=literal,
        equality_only=op in ("==", "!="),
    )
