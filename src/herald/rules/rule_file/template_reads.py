"""The names a template reads, found in its text rather than by rendering it.

Rendering a template on a sample reads only the branches the sample's values take: an
``{% else %}``, an ``{% if not user.vip %}`` or the body of a loop over a sample's empty
list is never run, so a misspelt name there would pass the check and print nothing (or
whatever a client sends under that name) in every message that takes the branch. Each
read of ``user.x``, ``event.x`` and ``event.properties.x`` (or ``["x"]``) is found in the
template's syntax tree instead, whichever branch holds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from jinja2 import Environment, TemplateSyntaxError, nodes

from herald.rules.definition import EventType
from herald.rules.rendering.client_values import read_names
from herald.rules.rule_file.samples import EVENT_FIELDS

# The roots a rule file declares the names of.
_ROOTS = ("user", "event")
# What may take a name the file does not declare, as the render check allows:
# `{% if user.nickname is defined %}`, `{{ user.nickname | default("there") }}`.
_GUARD_TESTS = frozenset({"defined", "undefined"})
_GUARD_FILTERS = frozenset({"default", "d"})

_PARSER = Environment()
_DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))


def read_paths(source: str, *, with_guarded: bool = False) -> list[str]:
    """The declared-name reads of ``source`` as ``user.x``, ``event.x`` or
    ``event.properties.x``, in order and once each, leaving out the reads that are only
    tested with ``is defined`` or given a ``default``, or of a root the template assigns
    (a loop variable or a macro argument called ``user``); with ``with_guarded``, those
    tested or given a default alone."""
    try:
        tree = _PARSER.parse(source)
    except TemplateSyntaxError:
        return []  # said by the compile, with the part and the line
    shadowed = {
        name.name
        for name in tree.find_all(nodes.Name)
        if name.ctx in ("store", "param") and name.name in _ROOTS
    }
    found: dict[str, bool] = {}  # path -> whether every read of it is guarded
    for path, guarded in _reads(tree, guarded=False):
        if path.split(".", 1)[0] not in shadowed:
            found[path] = found.get(path, True) and guarded
    # A name tested anywhere with `is defined` may be read where the test let it through.
    tested = {path for path, guarded in _reads(tree, guarded=False) if guarded}
    wanted = [path for path, guarded in found.items() if not guarded and path not in tested]
    return wanted if not with_guarded else [path for path in found if path not in wanted]


def _reads(node: nodes.Node, guarded: bool, called: bool = False) -> Iterator[tuple[str, bool]]:
    path = _declared_part(node)
    # `event.properties.items()` calls the dict's method when no property has its name.
    if path is not None and not (called and path.rsplit(".", 1)[1] in _DICT_METHODS):
        yield path, guarded
    for child in node.iter_child_nodes():
        is_called = isinstance(node, nodes.Call) and child is node.node
        yield from _reads(child, _guards(node, child), is_called)


def _guards(parent: nodes.Node, child: nodes.Node) -> bool:
    if isinstance(parent, nodes.Test) and parent.name in _GUARD_TESTS:
        return child is parent.node
    if isinstance(parent, nodes.Filter) and parent.name in _GUARD_FILTERS:
        return child is parent.node
    return False


def _declared_part(node: nodes.Node) -> str | None:
    """The path ``node`` reads when it is ``user.x``, ``event.x`` or
    ``event.properties.x`` (the last segment a name the rule file declares, or should)."""
    path = read_names(node)
    if path is None:
        return None
    wanted = 3 if path[:2] == ["event", "properties"] else 2
    # Only the node that reads the declared name itself; deeper keys are the client's.
    return ".".join(path) if len(path) == wanted else None


def undeclared_paths(
    source: str, event_type: EventType, traits: Mapping[str, str], *, guarded: bool = False
) -> list[str]:
    """The paths ``source`` reads that the rule file does not declare: a trait not in
    ``traits`` (``user.id`` is every user's), a field no event has, a property
    ``event_type`` does not declare; with ``guarded``, those it only tests with ``is
    defined`` or gives a ``default``, which are left to the events."""
    return [
        path
        for path in read_paths(source, with_guarded=guarded)
        if not _is_declared(path, event_type, traits)
    ]


def _is_declared(path: str, event_type: EventType, traits: Mapping[str, str]) -> bool:
    root, _, rest = path.partition(".")
    if root == "user":
        return rest == "id" or rest in traits
    if rest.startswith("properties."):
        return rest.removeprefix("properties.") in event_type.properties
    return rest in EVENT_FIELDS
