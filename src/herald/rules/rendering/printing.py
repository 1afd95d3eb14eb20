"""How a template prints a client's values: in JSON's spelling (``true``, ``[1, "a"]``),
null as nothing, through ``{{ ... }}``, ``~``, ``join``, ``string``, the ``format`` filter,
a text's ``format`` and ``%``."""

from __future__ import annotations

import json
from types import GeneratorType
from typing import Any

import orjson
from jinja2 import nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import do_format, do_join, do_tojson, make_attrgetter
from jinja2.nodes import EvalContext
from markupsafe import soft_str


def as_printed(value: Any) -> Any:
    """A client's JSON value as ``{{ ... }}`` prints it: in JSON's spelling (``true``,
    ``[1, "a"]``), not Python's (``True``, ``[1, 'a']``), and null as nothing, as an
    absent value prints."""
    kind = type(value)
    if kind is str:  # most of what a template prints: returned at once
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is list or kind is dict:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    if kind in _MADE_LISTS:
        # What a filter or a method makes of a client's list or object (`map`, `unique`,
        # `reverse`, `keys()`, a `dictsort` pair) is a list too: Python's spelling of it,
        # `<generator object sync_do_map at 0x7f...>`, went to every customer.
        return orjson.dumps(list(value), option=orjson.OPT_NON_STR_KEYS).decode()
    return value


# Made by a template, never sent by a client: a generator (`map`, `select`, `unique`,
# `batch`), a reversed list, tuple or object's keys (`reverse`), a dict's views, a tuple, a
# range. Named one by one: a loop's `loop` and a `cycler` are iterators too, and printing
# one must not take its items.
_MADE_LISTS = frozenset(
    {
        GeneratorType,
        type(reversed([])),
        type(reversed(())),
        type(reversed({})),
        type({}.keys()),
        type({}.values()),
        type({}.items()),
        tuple,
        range,
    }
)
# The kinds ``as_printed`` spells otherwise than Python does.
_PRINTED_OTHERWISE = frozenset({bool, list, dict, *_MADE_LISTS})


@pass_eval_context
def printing_join(
    eval_ctx: EvalContext, value: Any, d: str = "", attribute: str | int | None = None
) -> str:
    """Jinja's ``join``, each item printed as ``{{ ... }}`` prints it: Jinja's own gave
    Python's spelling (``a, None, True``)."""
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    return do_join(eval_ctx, [as_printed(item) for item in value], d)


@pass_eval_context
def printing_tojson(eval_ctx: EvalContext, value: Any, indent: int | None = None) -> str:
    """Jinja's ``tojson`` where the output is HTML; elsewhere (a subject, ``body.txt``)
    the JSON as it is. Jinja's own escapes <, >, & and ' for HTML everywhere, and a text
    alert read ``AT\\u0026T``."""
    if eval_ctx.autoescape:
        return do_tojson(eval_ctx, value, indent)
    policies = eval_ctx.environment.policies
    dumps = policies["json.dumps_function"] or json.dumps
    options = dict(policies["json.dumps_kwargs"])
    if indent is not None:
        options["indent"] = indent
    return str(dumps(value, **options))


def printing_string(value: Any) -> str:
    """Jinja's ``string``, the value printed as ``{{ ... }}`` prints it (``true``, not
    ``True``), text marked safe kept so."""
    return soft_str(as_printed(value))


class _Printed:
    """A client's value (true, null, a list) that ``%s``, ``%r`` and ``{}`` print as
    ``{{ ... }}`` does, and ``%d``, ``%f`` or ``{:d}`` still read as the number it is
    (true as 1)."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __str__(self) -> str:
        return str(as_printed(self._value))

    __repr__ = __str__

    def __index__(self) -> int:
        return int(self._value)

    __int__ = __index__

    def __float__(self) -> float:
        return float(self._value)

    def __format__(self, spec: str) -> str:
        # A numeric presentation reads true as 1, as Python does; any other spec (a
        # width, an alignment) lays out the printed text.
        if spec and spec[-1] in _NUMERIC_PRESENTATIONS and type(self._value) is bool:
            return format(self._value, spec)
        return format(str(self), spec)


_NUMERIC_PRESENTATIONS = frozenset("bcdoxXneEfFgG%")


def _printed_for_format(value: Any) -> Any:
    return _Printed(value) if value is None or type(value) in _PRINTED_OTHERWISE else value


def printing_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` of a text's ``format``, each printed as ``{{ ... }}`` prints
    it (``"{}".format(true)`` gave "True")."""
    printed = {key: _printed_for_format(item) for key, item in kwargs.items()}
    return tuple(_printed_for_format(item) for item in args), printed


def printing_operand(text: str, values: Any) -> Any:
    """The right side of ``text % values``, each value printed as ``{{ ... }}`` prints it
    (``"%s" % true`` gave "True"). A dict is the values of ``%(name)s`` when the text names
    some, else one value, as Python reads it."""
    kind = type(values)
    if kind is tuple:
        return tuple(_printed_for_format(item) for item in values)
    if kind is dict and "%(" in text:
        return {key: _printed_for_format(item) for key, item in values.items()}
    return _printed_for_format(values)


def printing_format(value: str, *args: Any, **kwargs: Any) -> str:
    """Jinja's ``format``, a value ``%s`` or ``%r`` takes printed as ``{{ ... }}`` prints
    it (``true``, not ``True``); ``%d`` still makes true 1."""
    if kwargs:
        kwargs = {key: _printed_for_format(item) for key, item in kwargs.items()}
    return do_format(value, *[_printed_for_format(item) for item in args], **kwargs)


def _is_text(node: nodes.Expr) -> bool:
    """Whether ``node`` is text written in the template, which prints as it is."""
    return isinstance(node, nodes.Const) and type(node.value) is str


class PrintingConcatenation(CodeGenerator):
    """Jinja's code, with each side of ``~`` printed as ``{{ ... }}`` prints it: Jinja's
    own turned them into text Python's way (``"Auto-pay: " ~ on`` gave "Auto-pay: True")."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        printer = nodes.EnvironmentAttribute("printed")
        parts: list[nodes.Expr] = [
            part if _is_text(part) else nodes.Call(printer, [part], [], None, None)
            for part in node.nodes
        ]
        super().visit_Concat(nodes.Concat(parts, lineno=node.lineno), frame)
