"""The work of a condition that the sizes of a client's values square, weighed before
CEL runs it.

A condition has no time limit, and on SQLite it is decided on the thread that answers
requests. The rule file check refuses a loop over a client's list inside a loop over
another (``rule_file.condition_work``), but two forms it accepts still take the product of two
sizes a client chooses: CEL's ``map`` and ``filter`` copy the list they have built so
far once for each item, so their work is the square of the list's size (500 items took
7.6 ms, 4,000 items 0.7 s, and a 1 MiB event holds 100,000); and ``+`` in the body of a
loop over a client's list, of a value the client sent that is the same for each item
(bound to a name before it, ``[event.properties.note].exists(n, items.exists(x, (n +
x).size() > 9))``, or an item's own in a loop over its list, ``items.exists(i,
i.tags.exists(t, t + i.note == "x"))``), copies that value once for each item.

For those, ``costly_loops`` records which of the client's values they go through and
copy, and ``over_budget`` weighs them on an event before CEL does: a condition that
would take more than ``MAX_CONDITION_STEPS`` is not evaluated. A condition without
them costs nothing more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from herald.rules.conditions.syntax import MACROS, Node, is_macro, parse

# Steps a condition may take, a step being the copy of one item of a list: `map` over 500
# items takes 250,000 (7.6 ms measured; 1,000 items 29 ms, 2,000 items 114 ms).
MAX_CONDITION_STEPS = 250_000
# The longest list a `map` or `filter` may go through within them.
MAX_COPIED_ITEMS = math.isqrt(MAX_CONDITION_STEPS)
# Copying a string costs about 0.07 ns a character, where copying a list's item costs
# 28 ns (both measured): a step of a string is this many characters.
CHARACTERS_PER_STEP = 256

_COPYING = frozenset({"map", "filter"})
# Functions whose result is as large as their argument; any other gives a scalar.
_SAME_SIZE = frozenset({"string", "bytes", "dyn"})

# A path to a client's value: ``("event", "properties", "items")``; a part "[]" stands
# for each item of the list (or each value of the map) before it.
Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Loop:
    """``shown``, a part of a condition, goes once through each item of the values at
    ``over`` and, for each, copies the values at ``copied``."""

    shown: str
    over: tuple[Path, ...]
    copied: tuple[Path, ...]

    def steps(self, context: dict[str, Any]) -> tuple[int, int]:
        """The items it goes through in ``context`` (``{"event": ..., "user": ...}``),
        and the steps it takes: the items times the size of the largest it copies."""
        sizes = [list(map(_size, _values(context, path))) for path in self.over]
        items = sum(map(sum, sizes))
        if self.copied != self.over:  # a map's or a filter's are the same: read them once
            sizes = [list(map(_size, _values(context, path))) for path in self.copied]
        copied = sum(max(found, default=0) for found in sizes)
        return items, items * copied

    def described(self) -> str:
        """When it skips its rule, for ``herald rules check``."""
        over = ", ".join(_shown(path) for path in self.over)
        size, instead = f"the items of {over}, squared", ""
        if self.over == self.copied:  # a map or a filter
            instead = "; `exists`, `all` and `exists_one` go through a list once"
        else:
            copied = ", ".join(_shown(path) for path in self.copied)
            size = f"the items of {over} times the size of {copied}"
        return (
            f"skipped when `{self.shown}` would take more than {MAX_CONDITION_STEPS:,} steps "
            f"({size}: a map or filter over {MAX_COPIED_ITEMS:,} items){instead}"
        )


def costly_loops(source: str) -> tuple[Loop, ...]:
    """The parts of ``source``, a CEL condition, whose work is the product of the sizes of
    a client's values: a ``map`` or ``filter`` over one, and, in the body of a loop over
    one, a ``+`` of a value that is the same for each of its items (bound before it, or
    read from the item of a loop around it)."""
    found: _Found = {}
    try:
        _Walk(source, found).visit(parse(source), {}, (), 0)
    except (SyntaxError, RecursionError):  # CEL compiled it: a form this reader lacks,
        return ()  # or one nested deeper than it reads (a chain of a thousand `&&`)
    return tuple(found.values())


def over_budget(loops: tuple[Loop, ...], context: dict[str, Any]) -> str | None:
    """Why a condition with ``loops`` is not evaluated on ``context``, or None if its
    work stays within ``MAX_CONDITION_STEPS``."""
    for loop in loops:
        items, steps = loop.steps(context)
        if steps > MAX_CONDITION_STEPS:
            over = ", ".join(_shown(path) for path in loop.over)
            return (
                f"not evaluated: its `{loop.shown}` would take {steps:,} steps over the "
                f"{items:,} items of {over}, more than the {MAX_CONDITION_STEPS:,} a condition "
                f"may take (a map or filter over {MAX_COPIED_ITEMS:,} items), as it has no time "
                "limit"
            )
    return None


# What a name a macro binds holds: ``(level, paths)``, how many loops over a client's
# values were around it, and the client's values its own size grows with. A loop at
# a deeper level goes through its items with the name's value the same for each.
_Bound = dict[str, tuple[int, tuple[Path, ...]]]
_Found = dict[tuple[tuple[Path, ...], tuple[Path, ...]], Loop]


class _Walk:
    def __init__(self, source: str, found: _Found) -> None:
        self.source = source
        self.found = found

    def add(self, node: Node, over: tuple[Path, ...], copied: tuple[Path, ...]) -> None:
        shown = self.source[node.start : node.end]
        if node.kind == "method" and node.name in MACROS:
            target = self.source[node.args[0].start : node.args[0].end]
            if node.args[0].kind == "op":  # the tree keeps no parentheses: put them back
                target = f"({target})"
            shown = f"{target}.{node.name}({node.args[1].name}, ...)"
        # Once for each work: `(n + x) + y` copies what `n + x` does, and is said once.
        self.found.setdefault((over, copied), Loop(shown, over, copied))

    def visit(self, node: Node, bound: _Bound, over: tuple[Path, ...], depth: int) -> None:
        """Look through ``node``, in ``depth`` loops over a client's values, the innermost
        going through the values at ``over``."""
        if is_macro(node):
            self.macro(node, bound, over, depth)
            return
        if depth and node.kind == "op" and node.name == "+":
            copied = tuple(p for arg in node.args for p in _paths(arg, bound, below=depth))
            if copied:
                self.add(node, over, copied)
        for child in node.args:
            self.visit(child, bound, over, depth)

    def macro(self, node: Node, bound: _Bound, over: tuple[Path, ...], depth: int) -> None:
        target, *rest = node.args
        self.visit(target, bound, over, depth)
        names = [arg.name for arg in rest[:-1] if arg.kind == "ident"]
        if node.name == "map":  # map(x, body) or map(x, filter, body): one name
            names = names[:1]
        if target.kind == "list":  # a list written in the rule: as many items as written
            items = tuple(p for item in target.args for p in _paths(item, bound))
        else:
            sized = _paths(target, bound)
            if sized and node.name in _COPYING:
                self.add(node, sized, sized)
            if sized:
                over, depth = sized, depth + 1
            items = tuple((*path, "[]") for path in sized)
        inner = {**bound, **{name: (depth, items) for name in names}}
        for body in rest[len(names) :]:
            self.visit(body, inner, over, depth)


def _paths(node: Node, bound: _Bound, below: int | None = None) -> tuple[Path, ...]:
    """The client's values the size of ``node``'s value grows with; with ``below``, only
    those read from ``event``, ``user`` or a name bound at a level below it."""
    if node.kind == "ident":
        if node.name in bound:
            level, paths = bound[node.name]
            return paths if below is None or level < below else ()
        return ((node.name,),) if node.name in ("event", "user") else ()
    if node.kind in ("select", "index"):
        part = node.name if node.kind == "select" else "[]"
        return tuple((*path, part) for path in _paths(node.args[0], bound, below))
    if is_macro(node):
        return _paths(node.args[0], bound, below) if node.name in _COPYING else ()
    if node.kind == "op" and node.name in ("+", "?:"):
        return tuple(p for arg in node.args[-2:] for p in _paths(arg, bound, below))
    if node.kind in ("call", "method") and node.name in _SAME_SIZE:
        return tuple(p for arg in node.args for p in _paths(arg, bound, below))
    return ()


def _values(context: Any, path: Path) -> list[Any]:
    """The values at ``path`` in ``context``: many when it goes through a list's items.
    A list a step, not a generator an item: it is read for each event."""
    if "[]" not in path:  # one value, the usual case: 0.3 us, where the loop takes 1.6
        for part in path:
            if not isinstance(context, dict) or part not in context:
                return []
            context = context[part]
        return [context]
    found = [context]
    for part in path:
        if part == "[]":
            found = [
                item
                for value in found
                if isinstance(value, (list, dict))
                for item in (value.values() if isinstance(value, dict) else value)
            ]
        else:
            found = [value[part] for value in found if isinstance(value, dict) and part in value]
    return found


def _size(value: Any) -> int:
    """``value``'s size in steps: a list's or a map's items, a string's characters by
    ``CHARACTERS_PER_STEP``; anything else, one."""
    if isinstance(value, (list, dict)):
        return len(value)
    if isinstance(value, (str, bytes)):
        return len(value) // CHARACTERS_PER_STEP + 1
    return 1


def _shown(path: Path) -> str:
    return ".".join(path).replace(".[]", "[]")
