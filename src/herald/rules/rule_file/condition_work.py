"""A condition whose work grows as the product of two sizes a client chooses.

A condition has no time limit, and on SQLite it is decided on the thread that answers
requests. A macro (``exists``, ``all``, ``exists_one``, ``map``, ``filter``) over a
client's list runs its body once per item; what the body does with a value the client
chose besides the item then costs that value's size once per item: another macro over
a list read from ``event`` or ``user``, ``x in`` it, a search of such a string with
``contains`` or ``matches``, and any read of ``event`` or ``user`` at all, which takes
as long as what the condition reads of it (4,000 items took 8.5 s, and a 1 MiB event
holds 100,000). Such a condition is refused when the rule file loads, saying how to
write it. A macro over what the outer one gives (``items.exists(i, i.tags.exists(...))``)
goes through each item's own list once, and is linear, as is a macro over a list written
in the rule (``["a", "b"].exists(k, ...)``): both stay accepted, and so does a value read
once before the loop and bound to a name by a macro over a list of one item
(``[event.properties.limit].exists(n, items.exists(i, i.price > n))``)."""

from __future__ import annotations

from collections.abc import Mapping

from herald.rules.conditions.syntax import Node, is_macro, parse
from herald.rules.definition import EventType

_CLIENT = frozenset({"event", "user"})
_PRODUCT = (
    "once for each item of {outer}: its work grows as the product of two sizes the "
    "client chooses (a 1 MiB event holds a list of 100,000 items), and a condition has "
    "no time limit"
)
_NESTED_FIX = (
    "loop over what the outer macro gives (`items.exists(i, i.tags.exists(t, t == "
    '"vip"))`), or test each list on its own, joined by && or || (`a.exists(x, x == "zz") '
    '&& b.exists(y, y == "zz")`)'
)
_SEARCHES = frozenset({"contains", "matches"})
_SEARCH_FIX = (
    'write the text or the pattern in the rule (`x.contains("vip")`), or have the '
    "client send the answer as a property of its own"
)
_READ_FIX = (
    "read it once, outside the macro, by binding it to a name with a macro over a list of "
    "one item (`[event.properties.limit].exists(n, event.properties.items.exists(i, "
    "i.price > n))`)"
)
_IN_FIX = (
    'compare with values written in the rule (`x in ["gold", "vip"]`), or have the '
    "client send the answer as a property of its own"
)


def product_work(source: str, event_type: EventType, traits: Mapping[str, str]) -> list[str]:
    """What in the body of a macro over a client's list goes through another value a
    client chose, once for each item: a read of ``event`` or ``user`` (which takes as long
    as what the condition reads of it), or, read from them before the macro, a list
    looped over by another macro or looked through by ``in`` (a map, whose lookup is one
    step, aside), or a string searched (``contains``, ``matches``)."""
    maps = {"event", "event.properties", "user"}
    maps |= {
        f"event.properties.{p.name}" for p in event_type.properties.values() if p.type == "object"
    }
    maps |= {f"user.{name}" for name, kind in traits.items() if kind == "object"}
    problems: list[str] = []
    try:
        _Walk(source, maps, problems).visit(parse(source), {}, None)
    except (SyntaxError, RecursionError):  # CEL compiled it: a form this reader lacks,
        return []  # or one nested deeper than it reads (a chain of a thousand `&&`)
    return problems


# What a name a macro binds holds: an item of the list it goes through ("item"), or, bound
# outside every macro over a client's list, a value fixed for all its items, which may be
# a client's ("client") or not ("fixed").
_Bound = dict[str, str]


class _Walk:
    def __init__(self, source: str, maps: set[str], problems: list[str]) -> None:
        self.source = source
        self.maps = maps
        self.problems = problems
        # The reads a problem has named already, as (start, end): not named again as reads.
        self.claimed: set[tuple[int, int]] = set()

    def shown(self, node: Node) -> str:
        return self.source[node.start : node.end]

    def visit(self, node: Node, bound: _Bound, outer: tuple[str, str] | None) -> None:
        """Look through ``node`` for what ``product_work`` refuses. ``bound`` holds the
        names the macros around it bind; ``outer`` is the macro over a client's list
        whose body ``node`` is in, if any, as shown and the list it goes through."""
        if outer is not None and _root(node) in _CLIENT - bound.keys():
            if any(start <= node.start and node.end <= end for start, end in self.claimed):
                return
            self.report(
                f"reads `{self.shown(node)}` in the body of `{outer[0]}`, which takes as long "
                f"as what the condition reads of `{_root(node)}`, {_PRODUCT.format(outer=outer[1])}"
                f": {_READ_FIX}"
            )
            return  # what else is wrong with it would be said of the same read
        if is_macro(node):
            self.macro(node, bound, outer)
            return
        if outer is not None and node.kind == "op" and node.name == "in":
            right = node.args[1]
            if (
                self.fixed_client(right, bound)
                and "".join(self.shown(right).split()) not in self.maps
            ):
                self.claimed.add((right.start, right.end))
                self.report(
                    f"looks for a value in `{self.shown(right)}` in the body of `{outer[0]}` "
                    f"(`{self.shown(node)}`), going through that list "
                    f"{_PRODUCT.format(outer=outer[1])}: {_IN_FIX}"
                )
        if outer is not None and node.kind in ("method", "call") and node.name in _SEARCHES:
            read = next((arg for arg in node.args if self.fixed_client(arg, bound)), None)
            if read is not None:
                self.claimed.add((read.start, read.end))
                self.report(
                    f"searches with `{self.shown(read)}` in the body of `{outer[0]}` "
                    f"(`{self.shown(node)}`), going through that text "
                    f"{_PRODUCT.format(outer=outer[1])}: {_SEARCH_FIX}"
                )
        for child in node.args:
            self.visit(child, bound, outer)

    def macro(self, node: Node, bound: _Bound, outer: tuple[str, str] | None) -> None:
        target, *rest = node.args
        if outer is not None and self.fixed_client(target, bound):
            self.claimed.add((target.start, target.end))
            self.report(
                f"loops over `{self.shown(target)}` in the body of `{outer[0]}`, "
                f"{_PRODUCT.format(outer=outer[1])}: {_NESTED_FIX}"
            )
        self.visit(target, bound, outer)
        names = [arg.name for arg in rest[:-1] if arg.kind == "ident"]
        if node.name == "map":  # map(x, body) or map(x, filter, body): one name
            names = names[:1]
        client = target.kind not in ("list", "map") and _reads(target, bound, {"client"})
        if outer is None and client:
            over = self.shown(target)
            outer = (f"{over}.{node.name}({', '.join(names)}, ...)", f"`{over}`")
        if outer is not None:
            kind = "item"
        elif target.kind == "list" and all(self.fixed_map(item, bound) for item in target.args):
            kind = "fixed"  # `[event.properties.meta].exists(m, ...)`: a map, or the rule's
        else:
            kind = "client"
        inner = {**bound, **dict.fromkeys(names, kind)}
        for body in rest[len(names) :]:
            self.visit(body, inner, outer)

    def fixed_client(self, node: Node, bound: _Bound) -> bool:
        """Whether ``node``, in the body of a macro over a client's list, may be a value a
        client sized that is the same for each of its items, and not written in the rule."""
        return node.kind not in ("list", "map", "literal") and _reads(node, bound, {"client"})

    def fixed_map(self, node: Node, bound: _Bound) -> bool:
        known = "".join(self.shown(node).split()) in self.maps
        return known or not _reads(node, bound, {"client"})

    def report(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


def _root(node: Node) -> str | None:
    """The name a read (``event.properties.items[0]``) starts from; None if no read."""
    while node.kind in ("select", "index"):
        node = node.args[0]
    return node.name if node.kind == "ident" else None


def _reads(node: Node, bound: _Bound, kinds: set[str]) -> bool:
    """Whether ``node`` reads ``event`` or ``user``, or a name bound as one of ``kinds``."""
    if node.kind == "ident":
        return bound[node.name] in kinds if node.name in bound else node.name in _CLIENT
    if is_macro(node):
        target, *rest = node.args
        inner = {**bound, **{arg.name: "item" for arg in rest[:-1] if arg.kind == "ident"}}
        return _reads(target, bound, kinds) or any(_reads(body, inner, kinds) for body in rest)
    return any(_reads(child, bound, kinds) for child in node.args)
