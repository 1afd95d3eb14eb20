"""A CEL expression read into a tree, for checks that need its shape (which macro is in
which one's body): the CEL library Herald evaluates with compiles an expression but
shows none of its structure.

Only expressions the library has compiled are read, so this parser need not explain a
mistake: it follows CEL's grammar (cel-spec's ``langdef``) and raises ``SyntaxError`` on
what it does not know, which the caller takes as nothing to say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"(?P<space>\s+|//[^\n]*)"
    # A string or bytes literal, raw or not, in any of CEL's four quotings.
    r"|(?P<string>(?:[bB]?[rR]|[rR][bB])(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|\"[^\"\n]*\""
    r"|'[^'\n]*')"
    r"|[bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''"
    r"|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'))"
    r"|(?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?"
    r"|\d+[eE][+-]?\d+|\d+[uU]?)"
    r"|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<mark>&&|\|\||==|!=|<=|>=|[<>!+\-*/%?:.,()\[\]{}])"
)
_RELATIONS = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})


@dataclass(frozen=True, slots=True)
class Node:
    """One part of an expression: ``kind`` is ``ident`` (``name``), ``literal``,
    ``select`` (``args[0].name``), ``call`` (``name(args)``), ``method``
    (``args[0].name(args[1:])``), ``index`` (``args[0][args[1]]``), ``list``, ``map``,
    ``message`` or ``op`` (the operator ``name`` on ``args``); ``start`` and ``end``
    delimit its text in the source."""

    kind: str
    start: int
    end: int
    name: str = ""
    args: tuple[Node, ...] = ()


# CEL's macros that bind a name to each item of a list (or key of a map) in their body.
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


def is_macro(node: Node) -> bool:
    """Whether ``node`` is a macro call, ``list.map(x, body)``: its target, the name it
    binds, then its body."""
    return (
        node.kind == "method"
        and node.name in MACROS
        and len(node.args) >= 3
        and node.args[1].kind == "ident"
    )


def parse(source: str) -> Node:
    """The tree of ``source``, a CEL expression; raises ``SyntaxError`` if unreadable."""
    return _Parser(source).whole()


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str, int, int]] = []
        index = 0
        while index < len(source):
            match = _TOKEN.match(source, index)
            if match is None:
                raise SyntaxError(f"unexpected {source[index]!r} at {index}")
            kind = match.lastgroup or ""
            if kind in ("string", "number") or match[0] in ("true", "false", "null"):
                kind = "literal"
            elif kind == "name" and match[0] == "in":
                kind = "mark"
            if kind != "space":
                self.tokens.append((kind, match[0], match.start(), match.end()))
            index = match.end()
        self.at = 0

    def whole(self) -> Node:
        node = self.expression()
        if self.at != len(self.tokens):
            raise SyntaxError(f"unexpected {self.tokens[self.at][1]!r}")
        return node

    def peek(self) -> str:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else ""

    def take(self, *marks: str) -> tuple[str, str, int, int]:
        if self.at >= len(self.tokens) or (marks and self.peek() not in marks):
            raise SyntaxError(f"expected {' or '.join(marks)}, not {self.peek()!r}")
        self.at += 1
        return self.tokens[self.at - 1]

    def end(self) -> int:
        return self.tokens[self.at - 1][3]

    def expression(self) -> Node:
        test = self.binary(0)
        if self.peek() != "?":
            return test
        self.take("?")
        yes = self.binary(0)
        self.take(":")
        no = self.expression()
        return Node("op", test.start, no.end, "?:", (test, yes, no))

    # The binary operators, loosest first; each level's operands are the next level's.
    _LEVELS = (("||",), ("&&",), tuple(_RELATIONS), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.at < len(self.tokens) and self.tokens[self.at][0] == "mark":
            if self.peek() not in self._LEVELS[level]:
                break
            operator = self.take()[1]
            right = self.binary(level + 1)
            left = Node("op", left.start, right.end, operator, (left, right))
        return left

    def unary(self) -> Node:
        if self.peek() in ("!", "-"):
            start = self.tokens[self.at][2]
            operator = self.take()[1]
            operand = self.unary()
            return Node("op", start, operand.end, operator, (operand,))
        return self.member(self.primary())

    def member(self, node: Node) -> Node:
        while self.peek() in (".", "[", "{"):
            mark = self.take()[1]
            if mark == ".":
                if self.peek() == "?":  # an optional field, `a.?b`
                    self.take("?")
                name = self.take()[1]
                if self.peek() == "(":
                    args = self.arguments(")")
                    node = Node("method", node.start, self.end(), name, (node, *args))
                else:
                    node = Node("select", node.start, self.end(), name, (node,))
            elif mark == "[":
                if self.peek() == "?":
                    self.take("?")
                index = self.expression()
                self.take("]")
                node = Node("index", node.start, self.end(), "", (node, index))
            else:  # a message built by its type's name, `Type{field: value}`
                self.at -= 1
                fields = self.entries()
                node = Node("message", node.start, self.end(), "", fields)
        return node

    def primary(self) -> Node:
        kind, text, start, _ = self.take()
        if kind == "literal":
            return Node("literal", start, self.end(), text)
        if text == "." and self.at < len(self.tokens):  # `.name`: from the root scope
            kind, text, _, _ = self.take()
        if kind == "name":
            if self.peek() == "(":
                args = self.arguments(")")
                return Node("call", start, self.end(), text, args)
            return Node("ident", start, self.end(), text)
        if text == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if text == "[":
            items = self.arguments("]", opened=True)
            return Node("list", start, self.end(), "", items)
        if text == "{":
            self.at -= 1
            entries = self.entries()
            return Node("map", start, self.end(), "", entries)
        raise SyntaxError(f"unexpected {text!r}")

    def arguments(self, close: str, opened: bool = False) -> tuple[Node, ...]:
        """The expressions up to ``close``, separated by commas (a last comma allowed)."""
        if not opened:
            self.take("(")
        found = []
        while self.peek() != close:
            if self.peek() == "?":  # an optional item, `[?a]`
                self.take("?")
            found.append(self.expression())
            if self.peek() != close:
                self.take(",")
        self.take(close)
        return tuple(found)

    def entries(self) -> tuple[Node, ...]:
        """The keys and values of a ``{key: value, ...}``, one after the other."""
        self.take("{")
        found = []
        while self.peek() != "}":
            if self.peek() == "?":
                self.take("?")
            found.append(self.expression())
            self.take(":")
            found.append(self.expression())
            if self.peek() != "}":
                self.take(",")
        self.take("}")
        return tuple(found)
