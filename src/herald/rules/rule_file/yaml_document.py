"""Reading a rule file's YAML: as ``yaml.safe_load`` reads it, but refusing a key given
twice in one mapping and a document its aliases expand past reason, and saying what is
wrong in words that point at the fix (a condition YAML read as its own syntax, a line
indented off its mapping, a tab)."""

from __future__ import annotations

import re
from typing import Any

import yaml


class YamlRefused(ValueError):
    """The text is no YAML a rule file can be read from; the message says where and why."""


def read_yaml(text: str, source: str) -> Any:
    """The document ``text`` holds (``source`` names it in what is said of it); raises
    ``YamlRefused`` when it is not valid YAML, gives a key twice in one mapping, expands
    past ``MAX_ALIASED_VALUES`` through its aliases, or nests too deeply to read."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _AliasBomb as exc:
        raise YamlRefused(str(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlRefused(_yaml_problem(exc, text, source)) from None
    except RecursionError:  # PyYAML recurses once per level of nesting
        raise YamlRefused("nested too deeply for YAML to read") from None


# The values (each text, number, list and mapping) a rule file's YAML aliases may expand
# it to. Each alias repeats all its anchor holds, so nine levels of ten aliases of the
# level below read as a billion values from a few hundred bytes, which the file's version
# (a digest of all of it) walked for over a minute. A shared `properties` block reused by
# a few event types adds hundreds; a file of a thousand rules holds some tens of thousands.
MAX_ALIASED_VALUES = 100_000


class _AliasBomb(yaml.YAMLError):
    """The document's aliases expand it past ``MAX_ALIASED_VALUES``, or into itself."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML as ``safe_load`` reads it, but a key given twice in one mapping is an error
    (as YAML itself says), not the last one silently winning: a second `when:` in a rule,
    or a second `rules:` section, would otherwise replace the first without a word. And a
    document its aliases expand past ``MAX_ALIASED_VALUES`` is refused before it is built."""

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            values = _expanded_size(node, {}, set())
            if values > MAX_ALIASED_VALUES and values > _distinct_size(node, set()):
                raise _AliasBomb(
                    f"its YAML aliases expand it to more than {MAX_ALIASED_VALUES:,} values "
                    f"({values:,}: each alias repeats all that its anchor holds): "
                    "write out what is shared, or share less of it"
                )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`, overridable
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the constructor says so below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` reads as, each alias counted as all its anchor holds: an
    alias is the very node of its anchor, so each node is counted once and its size reused.
    Raises ``_AliasBomb`` for an alias inside what its anchor holds, endless once built."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise _AliasBomb(
            f"the YAML anchor on line {node.start_mark.line + 1} holds an alias of itself:"
            " what it reads as would never end"
        )
    open_nodes.add(key)
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in _children(node))
    open_nodes.discard(key)
    sizes[key] = size
    return size


def _distinct_size(node: yaml.Node, seen: set[int]) -> int:
    """How many values ``node`` holds as written, each aliased one counted once."""
    if id(node) in seen:
        return 0
    seen.add(id(node))
    return 1 + sum(_distinct_size(child, seen) for child in _children(node))


_WHEN_KEY = re.compile(r"\bwhen\s*:")


def _yaml_problem(exc: yaml.YAMLError, text: str, source: str) -> str:
    """What YAML found wrong, where in the file (YAML names the text it was given
    `<unicode string>`), and what to do for a condition YAML read as its own syntax, a
    line indented off its mapping, or a `: ` where no key can start."""
    problem = getattr(exc, "problem_mark", None)
    for mark in (getattr(exc, "context_mark", None), problem):
        if mark is not None:
            mark.name = source
    said = f"not valid YAML: {exc}"
    lines = text.splitlines()
    if problem is not None and problem.line < len(lines):
        key = _WHEN_KEY.search(lines[problem.line])
        if key is not None and problem.column >= key.end():
            said += (
                "\n(YAML reads a condition's leading `!` or quote, or a `: ` in it, as its "
                "own: quote the whole condition, e.g. when: '!has(user.vip)')"
            )
            return said
    found = str(getattr(exc, "problem", ""))
    if problem is not None and found.startswith(("expected <block end>", "did not find expected")):
        # YAML's words for a line indented off its mapping say nothing of indentation.
        said += (
            f"\n(line {problem.line + 1}, or a line above it, is not indented as YAML expects:"
            " the keys of one mapping, such as one rule's or one event's, start at the same"
            " column, and what a key holds is indented further than the key)"
        )
    elif problem is not None and found.startswith("found character '\\t'"):
        # An editor shows a tab as spaces: YAML's words name a character no one sees.
        said += (
            f"\n(line {problem.line + 1} holds a tab where YAML reads indentation or the start"
            " of a value: YAML indents with spaces alone; replace the tab with spaces)"
        )
    elif problem is not None and found.startswith("mapping values are not allowed"):
        said += (
            f"\n(YAML read a `: ` on line {problem.line + 1} as a key's, where none can start:"
            " a key there is indented further than the keys beside it, or a value holding"
            " `: ` must be quoted)"
        )
    return said
