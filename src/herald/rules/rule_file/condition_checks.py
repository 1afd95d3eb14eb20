"""A rule's condition tried on samples of its trigger when the rule file loads (its
template is tried in ``template_checks``).

A sample holds every property the trigger's event type declares and every declared trait,
each a value of its declared type. A condition that reads a name the file does not
declare, mixes types or gives no true or false would fail on every event, and each event
would skip the rule with the error as its reason: refused once instead, naming what to
fix. What fails only on some values (an index past the end, a string that does not parse
as a number) is left to the events, whose reasons say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from herald.rules.conditions.condition import Condition, ConditionError, bound_variables
from herald.rules.conditions.hints import explained
from herald.rules.definition import EventType
from herald.rules.rule_file.condition_work import product_work
from herald.rules.rule_file.literal_checks import (
    STRING_LITERAL,
    never_equal,
    unreadable_literals,
    with_article,
    without_comments,
)
from herald.rules.rule_file.samples import (
    EVENT_FIELDS,
    MISSPELT,
    declare_under,
    is_refused,
    misspelt_from,
    sample_context,
    undeclared,
)

# A read of a name the rule file declares or not: `user.x`, `event.x`,
# `event.properties.x`, or the same with ["x"]; not a macro or a method called on the
# map itself (`event.properties.exists(k, ...)`, `user.size()`).
_READ = re.compile(
    r"(?<![\w.])(?P<root>event\.properties|event|user)\s*"
    r"(?:\.\s*(?P<name>[A-Za-z_]\w*)(?!\w|\s*\()"
    r"|\[\s*(?P<quote>[\"'])(?P<key>[^\"'\\]*)(?P=quote)\s*\])"
)
_GUARD = re.compile(r"\bhas\s*\(\s*((?:event\.properties|event|user)\s*\.\s*[A-Za-z_]\w*)\s*\)")
# CEL's map membership test, `"coupon" in event.properties`, tests a key as has() does;
# not `"vip" in user.tags`, which looks in a list the map holds.
_IN_GUARD = re.compile(
    r"(?P<quote>[\"'])(?P<key>[A-Za-z_]\w*)(?P=quote)\s*\bin\s+"
    r"(?P<root>event\s*\.\s*properties|user)\b(?!\s*[.\[(])"
)
_KINDS = {
    int: "an int",
    float: "a double",
    str: "a string",
    bytes: "bytes",
    list: "a list",
    dict: "a map",
    type(None): "null",
    datetime: "a timestamp",
    timedelta: "a duration",
}


# A sample's context (`event`, `user`), and how a problem names the sample.
_Sample = tuple[dict[str, Any], str]


def condition_problems(
    condition: Condition,
    event_type: EventType,
    traits: Mapping[str, str],
    refused_traits: frozenset[str],
    anchor: EventType | None = None,
) -> list[str]:
    """What is wrong with ``condition`` on events of ``event_type``: the names it reads
    that the rule file does not declare (unless guarded by ``has()``), or else what fails
    on samples of every declared value; empty when nothing does."""
    shown = f"`when: {condition.source}`"
    # Said whatever else is wrong with it, as no sample shows them: what its work costs,
    # and a misspelt name it tests for.
    foremost = [f"{shown} {said}" for said in product_work(condition.source, event_type, traits)]
    source = without_comments(condition.source)  # a name in a comment is read by no one
    reads = {path: _declared_type(path, event_type, traits) for path in condition_reads(source)}
    guarded = _guarded(source)
    refused = {path for path in reads if is_refused(path, event_type, refused_traits)}
    # Found in the text rather than by evaluating: `a == "x" && b > 1` never reads `b`
    # on a sample whose `a` is not "x".
    unknown = [
        path
        for path, kind in reads.items()
        if kind is None and path not in guarded and path not in refused
    ]
    # A name tested for is left to the events, unless it is a misspelling of a declared
    # one: then no event sends it, and the rule never holds.
    foremost += [
        f"{shown} tests for {path}, which the rule file does not declare, and no event will"
        f" send: did you mean {meant}? (declare it under {declare_under(path, event_type)}"
        " if it is meant)"
        for path, kind in reads.items()
        if kind is None and path in guarded
        if (meant := misspelt_from(path, event_type, traits, MISSPELT)) is not None
    ]
    if unknown:
        hint = ", or test it first with has({})"
        return foremost + [
            f"{shown} uses {undeclared(path, event_type, traits, hint.format(path), anchor)}"
            for path in unknown
        ]
    if refused:
        # Without the type its declaration failed to give, the samples would only report
        # that mistake again, as a condition that cannot be evaluated.
        return foremost
    known = [f"{path} is {with_article(kind)}" for path, kind in reads.items() if kind is not None]
    where = f", where {', '.join(known)}" if known else ""
    found = never_equal(condition.source, event_type, traits)
    found += unreadable_literals(condition.source)
    problems = foremost + [f"{shown} {said}" for said in found]
    problem = _problem_on_samples(condition, event_type, traits, where)
    return [*problems, f"{shown} {problem}"] if problem else problems


def _guarded(source: str) -> set[str]:
    """The paths ``source`` tests for before reading: with has(), or with `in` on the map."""
    tested = {re.sub(r"\s", "", path) for path in _GUARD.findall(source)}
    for found in _IN_GUARD.finditer(source):
        root = re.sub(r"\s", "", found["root"])
        tested.add(f"{root}.{found['key']}")
    return tested


def _problem_on_samples(
    condition: Condition, event_type: EventType, traits: Mapping[str, str], where: str
) -> str | None:
    """What ``condition`` does wrong on every event of ``event_type`` (fails on the
    declared types, or gives no true or false), found on samples; None if nothing."""
    samples = _samples(event_type, traits)
    for sample, on in samples:
        try:
            value = condition.value_on(sample)
        except Exception as exc:  # what the CEL library raises varies with the mistake
            if not _fails_on_types(exc):
                continue  # it depends on the sample's values, not on the declared types
            return f"cannot be evaluated on {on}{where}: {_first_line(exc)}"
        if not isinstance(value, bool):
            kind = _KINDS.get(type(value), type(value).__name__)
            return (
                f"gives {kind}, not true or false, on {on}{where}: "
                "a condition must be a test, such as a comparison"
            )
    return _operand_problem(condition, samples, where)


def _samples(event_type: EventType, traits: Mapping[str, str]) -> list[_Sample]:
    """The samples a condition is tried on, each with how a problem names it: one with
    every declared value, and one whose numbers are whole."""
    event = event_type.name
    return [
        (
            sample_context(event_type, traits, whole_numbers=whole_numbers),
            on,
        )
        for whole_numbers, on in (
            (False, f"a sample {event} event with every declared property and trait"),
            (
                True,
                f"a sample {event} event whose numbers are whole, as a client may send them (10 "
                "rather than 10.5; CEL keeps int and double apart: convert with double(...))",
            ),
        )
    ]


def _operand_problem(condition: Condition, samples: list[_Sample], where: str) -> str | None:
    """The first side of ``condition``'s && and || that fails on the declared types.

    CEL's && and || give false (or true) when either side does, whatever the other: a
    side that fails on every event would pass unseen when a sample's values make another
    side decide (`amount * 1.1 > 1000.0 && user.age >= 18` with an age of 1)."""
    for operand in _operands(without_comments(condition.source)):
        try:
            part = Condition(operand)
        except ConditionError:
            continue
        for sample, on in samples:
            try:
                part.value_on(sample)
            except Exception as exc:
                if _fails_on_types(exc):
                    return (
                        f"cannot be evaluated on {on}{where}: `{operand}` fails: {_first_line(exc)}"
                    )
    return None


def _first_line(exc: Exception) -> str:
    # CEL puts the details of a bad regex on the lines after "...not a valid regex:".
    return explained((str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":"))


def _operands(source: str) -> list[str]:
    """The sides of the && and || that join ``source``, or the test and both branches of
    its ``? :`` (and those inside a side in parentheses), each on its own; none when
    ``source`` is neither. A sample takes one branch of a ``? :`` alone: the other, often
    what an event without the value tested goes to, would pass unseen."""
    source = source.strip()
    marks, wrapped = _top_level_marks(source)
    if wrapped:
        return _operands(source[1:-1])
    if any(mark == "?" for _, mark in marks):
        sides = _branches(source, marks)
    else:
        cuts = [index for index, mark in marks if mark in ("&&", "||")]
        ends = [*cuts, len(source)]
        starts = [0, *(cut + 2 for cut in cuts)]
        sides = [source[start:end].strip() for start, end in zip(starts, ends, strict=True)]
    if len(sides) < 2:
        return []
    return [found for side in sides for found in (side, *_operands(side))]


def _top_level_marks(source: str) -> tuple[list[tuple[int, str]], bool]:
    """Where ``source`` has &&, ||, ? or : outside brackets and string literals, and
    whether it is all one pair of parentheses."""
    literals = [match.span() for match in STRING_LITERAL.finditer(source)]
    marks = []
    depth = 0
    wrapped = source.startswith("(")  # until its parenthesis closes before the end
    index = 0
    while index < len(source):
        inside = next((end for start, end in literals if start <= index < end), None)
        if inside is not None:
            index = inside
            continue
        char = source[index]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            wrapped = wrapped and (depth > 0 or index == len(source) - 1)
        elif depth == 0 and char in "?:":
            marks.append((index, char))
        elif depth == 0 and source[index : index + 2] in ("&&", "||"):
            marks.append((index, source[index : index + 2]))
            index += 1
        index += 1
    return marks, wrapped


def _branches(source: str, marks: list[tuple[int, str]]) -> list[str]:
    """The test and the two branches of ``source``, a ``? :`` (the loosest of CEL's
    operators, so the first ? outside brackets is its own); none if its : is missing."""
    question = next(index for index, mark in marks if mark == "?")
    open_questions = 0
    for index, mark in marks:
        if index < question or mark not in "?:":
            continue
        open_questions += 1 if mark == "?" else -1
        if open_questions == 0:
            parts = (source[:question], source[question + 1 : index], source[index + 1 :])
            return [part.strip() for part in parts]
    return []


def _fails_on_types(exc: Exception) -> bool:
    """Whether CEL refused the types it was given (an operator or a function that has no
    overload for them), which the declared types decide, or the condition's own regex,
    rather than the values."""
    if isinstance(exc, TypeError):  # "No such overload"
        return True
    if not isinstance(exc, RuntimeError):
        return False
    # A method called on a value of a type that has none of that name, e.g. `n.size()`
    # on an integer, or a function that does not exist; or a pattern that is no regex,
    # `matches("[")`: the samples' strings are ones, so it is the condition's own.
    said = str(exc)
    return said.startswith("Undefined variable or function") or "not a valid regex" in said


def condition_reads(source: str) -> Iterator[str]:
    """The paths ``source`` reads (``user.x``, ``event.properties.x``), outside string
    literals and variables a macro rebinds."""
    literals = [match.span() for match in STRING_LITERAL.finditer(source)]
    rebound = bound_variables(source)
    for match in _READ.finditer(source):
        if any(start <= match.start() < end for start, end in literals):
            continue
        root = match["root"]
        if root.partition(".")[0] in rebound:
            continue
        yield f"{root}.{match['name'] or match['key']}"


def _declared_type(path: str, event_type: EventType, traits: Mapping[str, str]) -> str | None:
    if path.startswith("user."):
        name = path.removeprefix("user.")
        return "string" if name == "id" else traits.get(name)
    if path.startswith("event.properties."):
        spec = event_type.properties.get(path.removeprefix("event.properties."))
        return spec.type if spec else None
    return EVENT_FIELDS.get(path.removeprefix("event."))
