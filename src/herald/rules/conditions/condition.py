"""Rule conditions in CEL (the Common Expression Language): safe, side-effect free, fast."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import cel
import orjson

from herald.domain.immutable import immutable
from herald.domain.properties import json_kind, type_matches
from herald.rules.conditions.comparison import parse_comparison
from herald.rules.conditions.hints import other_syntax
from herald.rules.conditions.size import Loop, costly_loops, over_budget

CONDITION_VARIABLES = frozenset({"event", "user"})
# The fields a condition reads, for its reason to show their values: a method called on
# one (`user.tags.exists(...)`, `.startsWith(...)`) is not a field, and is left out.
_PATH = re.compile(r"\b(?:event|user)(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?!\w|\s*\()")
# CEL's macros bind their own variables (`tags.exists(t, t == "vip")`): the library lists
# them among the expression's variables, but they are not inputs to be given.
_MACRO_VARIABLES = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
    r"(?:\s*([A-Za-z_][A-Za-z0-9_]*)\s*,)?"
)


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``unknown``, the names it reads alone (not
    from ``event`` or ``user``), when that is why."""

    def __init__(self, message: str, unknown: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.unknown = unknown


@immutable
class ConditionResult:
    holds: bool
    explanation: str


def _lookup(context: dict[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    """The value at ``keys`` (a path's parts, ``("event", "properties", "amount")``)."""
    node: Any = context
    for part in keys:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


# Values of its field whose result a comparison keeps (see ``Condition.evaluate``).
_RESULTS_KEPT = 1_000
# Characters of a value a reason shows: a client's 1 MiB string, shown whole, was stored
# again in the reason of every decision that read it, and answered back as many times.
_SHOWN = 200


def _cel_literal(value: Any) -> str:
    """``value`` as a reason shows it: JSON, as the client sent it (``"a\\"b"``, ``[true]``),
    cut short after ``_SHOWN`` characters, saying how long it is."""
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:  # e.g. an integer beyond 64 bits, which only CEL can make
        text = repr(value)
    if len(text) <= _SHOWN:
        return text
    return f"{text[:_SHOWN]}... ({len(text):,} characters)"


def _keeps(value: Any) -> bool:
    """Whether a comparison keeps its result for ``value``: not for a float (-0.0 is
    equal to 0.0, and written apart), nor for a long text (a client's megabyte)."""
    kind = type(value)
    return kind is not float and (kind is not str or len(value) <= _SHOWN)


class Condition:
    """A compiled CEL expression over ``event`` and ``user`` that must yield a bool."""

    def __init__(self, source: str) -> None:
        self.source = source.strip()
        try:
            self._program = cel.compile(self.source)
        except (ValueError, RuntimeError) as exc:
            raise ConditionError(f"does not compile: {exc}{other_syntax(self.source)}") from None
        unknown = (
            set(self._program.variables()) - CONDITION_VARIABLES - bound_variables(self.source)
        )
        if unknown:
            raise ConditionError(
                f"uses unknown variable(s) {sorted(unknown)}; only `event` and `user` exist"
                f"{other_syntax(self.source)}",
                tuple(sorted(unknown)),
            )
        # Each path with its parts, split once: a condition is evaluated for every event.
        self._paths = [
            (path, tuple(path.split("."))) for path in sorted(set(_PATH.findall(self.source)))
        ]
        # Converting a variable into CEL costs more than evaluating it: pass each only the
        # attributes the expression reads (`user.country in ["PT", "ES"]` against a user of
        # 7 traits: 8.6 us, against the whole user 24 us).
        self._projection = {
            name: _attributes_used(self.source, name)
            for name in sorted(CONDITION_VARIABLES & set(self._program.variables()))
        }
        # Its parts whose work the sizes of a client's values square, weighed on each event
        # before CEL runs: most conditions have none, and pay one test of an empty tuple.
        self.costly_loops: tuple[Loop, ...] = costly_loops(self.source)
        # The traits it reads that the rule file declares, with their types (``declare``).
        self._traits: list[tuple[str, tuple[str, str], str]] = []
        self._comparison = parse_comparison(self.source)
        if self._comparison is not None:
            # What a decided comparison's explanation says before the field's value, for
            # each answer, worked out once (with the parts of the path): 1.3% of a batch
            # event's instructions went to building them again for every rule and event.
            path = self._comparison.path
            self._keys = tuple(path.split("."))
            self._said = {
                holds: f"`{self.source}` is {_cel_literal(holds)} ({path} is "
                for holds in (True, False)
            }
            # The result for each value the field was found to hold, up to a number of
            # values: most fields hold a few (a reason, an attempt number), and writing
            # the explanation again cost each event several thousand instructions.
            self._decided: dict[Any, ConditionResult] = {}

    def declare(self, traits: Mapping[str, str]) -> None:
        """Give the rule file's trait types (``traits``, name to type), so that a failure
        on a trait an event gave another type says so."""
        read = {tuple(keys[:2]) for _, keys in self._paths if keys[0] == "user" and len(keys) > 1}
        self._traits = [
            (f"user.{name}", ("user", name), traits[name])
            for _, name in sorted(read)
            if name in traits
        ]

    def evaluate(
        self, context: dict[str, Any], sent: dict[str, Any] | None = None
    ) -> ConditionResult:
        """Evaluate against ``{"event": ..., "user": ...}``, which holds no value sent as
        null; ``sent``, the same with them, when the client sent any.

        Never raises: an expression that cannot be evaluated (a missing field, a type
        mismatch) does not hold, and the explanation says why, a value ``sent`` as null
        said to be null rather than missing.
        """
        if self._comparison is not None:
            found, value = _lookup(context, self._keys)
            holds = self._comparison.decide(value) if found else None
            if holds is not None:
                # Decided, ``value`` is of the literal's type: a key never mixes True with 1.
                kept = _keeps(value)
                result = self._decided.get(value) if kept else None
                if result is None:
                    result = ConditionResult(holds, f"{self._said[holds]}{_cel_literal(value)})")
                    if kept and len(self._decided) < _RESULTS_KEPT:
                        self._decided[value] = result
                return result
        return self.evaluate_in_cel(context, sent)

    def evaluate_in_cel(
        self, context: dict[str, Any], sent: dict[str, Any] | None = None
    ) -> ConditionResult:
        """``evaluate`` without the fast path for plain comparisons."""
        if self.costly_loops:
            too_costly = over_budget(self.costly_loops, context)
            if too_costly is not None:
                return ConditionResult(False, f"`{self.source}` was {too_costly}")
        try:
            value = self.value_on(context)
        except KeyError as exc:
            # CEL names the key alone ('seats'); the reader wants the path they wrote.
            missing = [keys for _, keys in self._paths if not _lookup(context, keys)[0]]
            said = _missing(context, missing[0], self.source, sent) if missing else f"{exc} missing"
            return ConditionResult(False, f"`{self.source}` could not be evaluated: {said}")
        except Exception as exc:
            # CEL names no operand ("No such overload"): the values it was given show which
            # one is of another type than the rule expects (`user.seats is "3"`).
            said = self._mistyped(context) or (
                (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
            )
            return ConditionResult(
                False,
                f"`{self.source}` could not be evaluated{self._values(context, sent)}: {said}",
            )
        if not isinstance(value, bool):
            return ConditionResult(False, self._not_a_test(value, context, sent))
        said = f"`{self.source}` is {_cel_literal(value)}{self._values(context, sent)}"
        if not value:
            # CEL finds `"true" == true` false without an error: a trait an event gave
            # another type than declared is the client's mistake, and the reason says so
            # rather than show "true" beside false.
            mistyped = self._mistyped(context)
            if mistyped is not None:
                said = f"{said}: {mistyped}"
        return ConditionResult(value, said)

    def value_on(self, context: dict[str, Any]) -> Any:
        """What the expression gives on ``context``, a bool or not; raises what the CEL
        library raises when it cannot be evaluated."""
        return self._program.execute(
            {
                name: context[name] if attrs is None else _pick(context[name], attrs)
                for name, attrs in self._projection.items()
            }
        )

    def _not_a_test(self, value: Any, context: dict[str, Any], sent: dict[str, Any] | None) -> str:
        """Why a condition that gave ``value``, not true or false, does not hold: a trait
        of another type than declared (`user.vip` sent as "true") is the client's mistake,
        said as a failure on such a trait is; else the value, in CEL's spelling."""
        values = self._values(context, sent)
        mistyped = self._mistyped(context)
        if mistyped is not None:
            return f"`{self.source}` could not be evaluated{values}: {mistyped}"
        said = f"{_cel_literal(value)}, {json_kind(value)}, not true or false"
        return f"`{self.source}` gives {said}{values}"

    def _mistyped(self, context: dict[str, Any]) -> str | None:
        """What a trait the condition reads holds instead of its declared type, if one
        does: the client's mistake, not the rule's, which CEL's error would suggest."""
        for path, keys, kind in self._traits:
            found, value = _lookup(context, keys)
            if found and not type_matches(value, kind):
                return f"{path} is {json_kind(value)}, not the {kind} the rule file declares"
        return None

    def _values(self, context: dict[str, Any], sent: dict[str, Any] | None) -> str:
        parts = []
        for path, keys in self._paths:
            found, value = _lookup(context, keys)
            parts.append(f"{path} is {_cel_literal(value) if found else _absence(keys, sent)}")
        return f" ({', '.join(parts)})" if parts else ""


def _absence(keys: tuple[str, ...], sent: dict[str, Any] | None) -> str:
    """How a value the condition did not see is said: ``null`` where the client sent it
    as null, which a condition sees as absent too, else ``missing``. "missing" alone had
    a support agent looking for a client that left out a trait it sent, as null."""
    if sent is not None:
        found, value = _lookup(sent, keys)
        if found and value is None:
            return "null"
    return "missing"


def _missing(
    context: dict[str, Any], keys: tuple[str, ...], source: str, sent: dict[str, Any] | None
) -> str:
    """What is missing of the path ``keys``: its first part the context lacks, which is
    the one to test (`has(event.properties.meta.plan)` fails when `meta` is absent)."""
    length = next((n for n in range(1, len(keys)) if not _lookup(context, keys[:n])[0]), len(keys))
    absent, path = ".".join(keys[:length]), ".".join(keys)
    how = _absence(keys[:length], sent)
    if absent != path and re.search(rf"\bhas\(\s*{re.escape(path)}\s*\)", source):
        return f"{absent} is {how}, and has({path}) needs it to be there: test has({absent}) first"
    if how == "null":  # the name is there, as the client spelt it
        return f"{absent} is null"
    return f"{absent} is missing{_sent_instead(context, keys[:length])}"


def _sent_instead(context: dict[str, Any], keys: tuple[str, ...]) -> str:
    """``, but the event sends referer`` where what holds the missing name holds one spelt
    like it: a client's typo, kept as an undeclared property, that the rule never reads."""
    found, holder = _lookup(context, keys[:-1])
    if not found or not isinstance(holder, dict):
        return ""
    by_lower = {str(key).lower(): str(key) for key in holder}
    close = difflib.get_close_matches(keys[-1].lower(), by_lower, n=1, cutoff=0.8)
    if not close:
        return ""
    return f", but {'.'.join(keys[:-1])} holds {by_lower[close[0]]}, spelt like it"


def bound_variables(source: str) -> set[str]:
    """The names CEL macros in ``source`` bind (``t`` in ``tags.exists(t, t == "vip")``)."""
    return {name for found in _MACRO_VARIABLES.finditer(source) for name in found.groups() if name}


def _attributes_used(source: str, variable: str) -> frozenset[str] | None:
    """The first-level attributes of ``variable`` that ``source`` reads, or None when it
    uses the variable whole (e.g. ``"x" in event``, ``user.size()``) and needs all of it."""
    pattern = re.compile(rf"\b{variable}\b(\.[A-Za-z_][A-Za-z0-9_]*)?(\s*\()?")
    attributes = set()
    for match in pattern.finditer(source):
        # `user.size()` or `user.exists(k, ...)` is a call on the whole map, not an attribute.
        if match.group(1) is None or match.group(2) is not None:
            return None
        attributes.add(match.group(1)[1:])
    return frozenset(attributes)


def _pick(value: Any, attributes: frozenset[str]) -> Any:
    if not isinstance(value, dict):
        return value
    return {key: value[key] for key in attributes if key in value}
