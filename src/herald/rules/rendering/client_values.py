"""Which values of a template come from the client: read from ``user`` or ``event``, or
from a name that holds such a value, found in the template's syntax tree.

A value is followed through ``{% set %}`` (and a namespace's attributes), ``{% with %}``,
a ``{% for %}`` loop's variables (and ``loop.previtem``, ``loop.nextitem``), a macro's
arguments (by position, by name, ``varargs`` and ``kwargs``) and a call block's
``caller(...)`` arguments. Names are followed without regard to order or scope: a name
that holds a client's value anywhere in the template is taken to hold one everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import nodes

_ROOTS = ("user", "event")
# Filters whose result is the value HTML-escaped, whatever it held.
_ESCAPING = frozenset({"e", "escape", "forceescape"})
# What gives back, as text, the markup an escaped value held: `striptags` unescapes its
# entities once the tags are gone, so `x | e | striptags | safe` is `x | safe`.
_UNESCAPING = frozenset({"striptags", "unescape"})
# What a loop's `loop` gives of the items it loops over; the rest are counts and flags.
_LOOP_ITEMS = frozenset({"previtem", "nextitem"})
# What is true or false, whatever the values it tests or compares.
_VERDICTS = (nodes.Test, nodes.Compare, nodes.Not)


class ClientValues:
    """The client's values of one template's syntax tree ``tree``."""

    def __init__(self, tree: nodes.Template) -> None:
        self._macros: dict[str, list[nodes.Macro]] = {}
        for macro in tree.find_all(nodes.Macro):
            self._macros.setdefault(macro.name, []).append(macro)
        called = {id(call.node) for call in tree.find_all(nodes.Call)}
        # A macro passed around as a value (`{% set greet = hello %}`) may be called under
        # any name: a client's value given to an unknown callee may be its argument.
        self._passed_macros = [
            macro
            for name in tree.find_all(nodes.Name)
            if name.ctx == "load" and name.name in self._macros and id(name) not in called
            for macro in self._macros[name.name]
        ]
        self._call_blocks = list(tree.find_all(nodes.CallBlock))
        # Each name holding a client's value, with what it came from (`user.first_name`),
        # and each holding one, escaped or not (which an unescaping gives back).
        self._names: dict[str, str] = {}
        self._escaped: dict[str, str] = {}
        bindings = [(name, value, False) for name, value in self._bindings(tree)]
        # A `{% set n %}...{% endset %}` block holds its values as they printed, escaped.
        bindings += [
            (name, block, True)
            for block in tree.find_all(nodes.AssignBlock)
            for name in _stored_names(block.target)
        ]
        found = True
        while found:  # until no name is found to hold one: `b` may hold `a`, set after it
            found = False
            for name, value, printed in bindings:
                for held, escaped in ((self._names, False), (self._escaped, True)):
                    if printed and not escaped:
                        continue
                    if name not in held and (source := self._source(value, escaped)):
                        held[name] = source
                        found = True

    def source(self, expr: nodes.Node) -> str | None:
        """What client's value ``expr`` is made from (``user.bio``, ``event.properties.note``),
        or None when it is made from none."""
        return self._source(expr, escaped=False)

    def _source(self, expr: nodes.Node, escaped: bool) -> str | None:
        """``source``, or with ``escaped``, what client's value ``expr`` is made from
        escaped or not: what an unescaping of it gives back."""
        if isinstance(expr, nodes.Name):
            if expr.ctx != "load":
                return None
            if expr.name in _ROOTS:
                return expr.name
            return self._names.get(expr.name) or (self._escaped.get(expr.name) if escaped else None)
        path = read_path(expr)
        if path is not None:
            return path
        if isinstance(expr, nodes.Getattr | nodes.Getitem) and _loop_count(expr):
            return None
        if isinstance(expr, nodes.Filter) and expr.name in _ESCAPING and not escaped:
            return None
        if _unescapes(expr):
            escaped = True
        if isinstance(expr, _VERDICTS) or (self._renders_text(expr) and not escaped):
            return None
        if isinstance(expr, nodes.CondExpr):  # the test picks a value but is not printed
            children: Iterator[nodes.Node] = iter(
                [expr.expr1, *([expr.expr2] if expr.expr2 is not None else [])]
            )
        else:
            children = expr.iter_child_nodes()
        for child in children:
            source = self._source(child, escaped)
            if source is not None:
                return source
        return None

    def holder(self, name: str) -> str | None:
        """What client's value the name ``name`` holds, if it holds one."""
        return self._names.get(name)

    def _renders_text(self, expr: nodes.Node) -> bool:
        """Whether ``expr`` calls a macro or a call block's body: its text, in which each
        value was escaped as it printed (or refused, printed unescaped), not its arguments."""
        return (
            isinstance(expr, nodes.Call)
            and isinstance(expr.node, nodes.Name)
            and (expr.node.name in self._macros or expr.node.name == "caller")
        )

    def _bindings(self, tree: nodes.Template) -> Iterator[tuple[str, nodes.Node]]:
        """Each name the template gives a value, with that value (once for each time)."""
        for assign in tree.find_all(nodes.Assign):
            for name in _stored_names(assign.target):
                yield name, assign.node
        for loop in tree.find_all(nodes.For):
            for name in [*_stored_names(loop.target), "loop"]:
                yield name, loop.iter
        for with_ in tree.find_all(nodes.With):
            for target, value in zip(with_.targets, with_.values, strict=False):
                for name in _stored_names(target):
                    yield name, value
        callables: list[nodes.Macro | nodes.CallBlock] = [*tree.find_all(nodes.Macro)]
        for macro in [*callables, *self._call_blocks]:
            params = macro.args[len(macro.args) - len(macro.defaults) :]
            for param, default in zip(params, macro.defaults, strict=True):
                yield param.name, default
        for call in tree.find_all(nodes.Call):
            yield from self._arguments(call)

    def _arguments(self, call: nodes.Call) -> Iterator[tuple[str, nodes.Node]]:
        """The parameters ``call`` gives a value, with that value."""
        callee = call.node.name if isinstance(call.node, nodes.Name) else None
        if callee == "caller":
            # Which call block's body a macro's `caller(...)` renders is the caller's.
            for block in self._call_blocks:
                yield from _matched(call, block.args)
        elif callee in self._macros:
            for macro in self._macros[callee]:
                yield from _matched(call, macro.args)
        else:
            for macro in self._passed_macros:
                for value in _values(call):
                    for name in [param.name for param in macro.args] + ["varargs", "kwargs"]:
                        yield name, value


def _matched(call: nodes.Call, params: list[nodes.Name]) -> Iterator[tuple[str, nodes.Node]]:
    """Each of ``params`` (and ``varargs``, ``kwargs``) with the value ``call`` gives it."""
    names = [param.name for param in params]
    for position, value in enumerate(call.args):
        yield (names[position] if position < len(names) else "varargs"), value
    for keyword in call.kwargs:
        yield (keyword.key if keyword.key in names else "kwargs"), keyword.value
    for spread in (call.dyn_args, call.dyn_kwargs):  # `*items`, `**options`: any of them
        if spread is not None:
            for name in [*names, "varargs", "kwargs"]:
                yield name, spread


def _values(call: nodes.Call) -> list[nodes.Node]:
    spreads = [spread for spread in (call.dyn_args, call.dyn_kwargs) if spread is not None]
    return [*call.args, *(keyword.value for keyword in call.kwargs), *spreads]


def _unescapes(expr: nodes.Node) -> bool:
    """Whether ``expr`` gives back the text an escaped value held: `| striptags`, or a
    call of an escaped value's own `.striptags()` or `.unescape()`."""
    if isinstance(expr, nodes.Filter):
        return expr.name in _UNESCAPING
    return (
        isinstance(expr, nodes.Call)
        and isinstance(expr.node, nodes.Getattr)
        and expr.node.attr in _UNESCAPING
    )


def _stored_names(target: nodes.Node) -> list[str]:
    if isinstance(target, nodes.Name):
        return [target.name]
    if isinstance(target, nodes.NSRef):  # `{% set ns.note = ... %}`: `ns` holds it
        return [target.name]
    if isinstance(target, nodes.Tuple):
        return [name for item in target.items for name in _stored_names(item)]
    return []


def _loop_count(expr: nodes.Getattr | nodes.Getitem) -> bool:
    """Whether ``expr`` reads a count or a flag of ``loop`` (``loop.index``)."""
    attribute = _attribute(expr)
    return (
        isinstance(expr.node, nodes.Name)
        and expr.node.name == "loop"
        and attribute is not None
        and attribute not in _LOOP_ITEMS
    )


def read_path(expr: nodes.Node) -> str | None:
    """``expr`` as the path it reads from ``user`` or ``event`` (``user.bio``,
    ``event.properties.meta.plan``) when it is one."""
    names = read_names(expr)
    return ".".join(names) if names is not None else None


def read_names(expr: nodes.Node) -> list[str] | None:
    """``expr`` as the names it reads from ``user`` or ``event``, root first
    (``["event", "properties", "plan"]``), when it reads one; else None."""
    names: list[str] = []
    while (attribute := _attribute(expr)) is not None:
        names.insert(0, attribute)
        expr = expr.node  # type: ignore[attr-defined]
    if names and isinstance(expr, nodes.Name) and expr.ctx == "load" and expr.name in _ROOTS:
        return [expr.name, *names]
    return None


def _attribute(expr: nodes.Node) -> str | None:
    if isinstance(expr, nodes.Getattr):
        return expr.attr
    if (
        isinstance(expr, nodes.Getitem)
        and isinstance(expr.arg, nodes.Const)
        and isinstance(expr.arg.value, str)
    ):
        return expr.arg.value
    return None
