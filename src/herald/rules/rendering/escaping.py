"""A client's values kept escaped in a template's HTML body.

``body.html`` is rendered with autoescaping: a trait or a property holding ``<a href=...>``
is sent as that text, not as a link. A template can turn it off for a value, by marking it
safe (``{{ user.first_name | safe }}``, ``map("safe")``), by ``tojson`` (its JSON is marked
safe, double quotes and all) or by printing it in ``{% autoescape false %}``: a name a user
typed at signup would then go into a customer's email as HTML (a phishing link, a broken
layout). Each such use of a value from ``user`` or ``event`` is found in the syntax tree
and refused when the rule file loads. Text the template writes itself, ``"<br>" | safe``,
is the author's HTML and stays allowed, as does ``{% filter safe %}``, whose body's values
are escaped as it renders, before the filter sees them.
"""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import Environment, TemplateSyntaxError, nodes

from herald.rules.rendering.client_values import ClientValues, read_path

_PARSER = Environment()
# Filters whose result is printed as it is, HTML and all.
_MARKING = frozenset({"safe", "tojson"})
# The escaped way to keep a value's line breaks, which works in the sandbox: `replace`
# given a text marked safe escapes the value it replaces in.
_LINE_BREAKS = '| e | replace("\\n", "<br>" | safe)'
_WHY = (
    "so markup or a link in it (in a name a user typed at signup, say) would go into the"
    " email as it is"
)


def unescaped_values(where: str, source: str) -> list[str]:
    """What ``source``, the HTML body ``where`` (``welcome/body.html``), prints of a
    client's value unescaped: each use of one marked safe or printed with autoescape off,
    with its line and what to write instead."""
    try:
        tree = _PARSER.parse(source)
    except TemplateSyntaxError:
        return []  # said by the compile, with the part and the line
    values = ClientValues(tree)
    problems = [f"template {where} line {line}: {problem}" for line, problem in _uses(tree, values)]
    return list(dict.fromkeys(problems))


def _uses(
    node: nodes.Node, values: ClientValues, off_since: int | None = None
) -> Iterator[tuple[int, str]]:
    """Each line of ``node`` printing a client's value unescaped, with what to say of it;
    ``off_since``: the line of the `{% autoescape false %}` that ``node`` is in."""
    if isinstance(node, nodes.ScopedEvalContextModifier):
        turned_on = all(
            isinstance(option.value, nodes.Const) and option.value.value
            for option in node.options
            if option.key == "autoescape"
        )
        off_since = None if turned_on else node.lineno
    elif isinstance(node, nodes.Output) and off_since is not None:
        for printed in node.nodes:
            if values.source(printed) is not None:
                yield printed.lineno, _printed_unescaped(printed, values, off_since)
    elif isinstance(node, nodes.Filter) and node.node is not None:
        marking = _marking(node)
        if marking is not None and values.source(node.node) is not None:
            yield node.lineno, _marked_safe(node.node, marking, values)
    for child in node.iter_child_nodes():
        yield from _uses(child, values, off_since)


def _marking(node: nodes.Filter) -> tuple[str, str] | None:
    """Which filter ``node`` marks its value safe with, and how the template writes it."""
    if node.name in _MARKING:
        return node.name, f"| {node.name}"
    if node.name == "map" and node.args:
        applied = node.args[0]
        if not isinstance(applied, nodes.Const):  # a filter named by a variable may be `safe`
            return "safe", "map(...)"
        if applied.value in _MARKING:
            return applied.value, f'map("{applied.value}")'
    return None


def _marked_safe(value: nodes.Node, marking: tuple[str, str], values: ClientValues) -> str:
    filter_name, written = marking
    described = _described(value, values)
    if filter_name == "tojson":  # it escapes <, > and &, but not the quotes
        return (
            f"`{written}` marks {described} as HTML with its double quotes unescaped, so"
            " printed in an attribute a client's value could close it and add its own"
            f" (a link, a style): drop `{written}` (body.html escapes each value it prints)"
        )
    return (
        f"`{written}` marks {described} as HTML, {_WHY}: drop `{written}` (body.html escapes"
        " each value it prints) or, to keep its line breaks, escape it first,"
        f" {{{{ {_spelt(value) or '...'} {_LINE_BREAKS} }}}}"
    )


def _printed_unescaped(value: nodes.Node, values: ClientValues, off_since: int) -> str:
    return (
        f"prints {_described(value, values)} in `{{% autoescape false %}}` (line {off_since}),"
        f" {_WHY}: print it outside that block, or escape it there,"
        f" {{{{ {_spelt(value) or '...'} | e }}}}"
    )


def _described(value: nodes.Node, values: ClientValues) -> str:
    """``value`` as its path, or its name and what it holds, or what it is made from."""
    source = values.source(value)
    spelt = _spelt(value)
    if spelt is not None and spelt == source:
        return spelt
    if spelt is not None:
        return f"{spelt} (which holds {source})"
    return f"a value made from {source}"


def _spelt(value: nodes.Node) -> str | None:
    """``value`` as a template writes it, when it is a name or a name's attribute."""
    attributes: list[str] = []
    while isinstance(value, nodes.Getattr):
        attributes.insert(0, value.attr)
        value = value.node
    if isinstance(value, nodes.Name):
        return ".".join([value.name, *attributes])
    return read_path(value)
