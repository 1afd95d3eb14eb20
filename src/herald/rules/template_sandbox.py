"""The Jinja sandbox templates render in, reading data the way a rule file author means it."""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import Undefined, nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import do_format, do_join, make_attrgetter, sync_do_slice
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter
from markupsafe import soft_str

# The largest text or list a template may make by repetition (`"*" * n`) or padding
# (`name.ljust(n)`, `text | indent(n)`), and the largest number, in bits, by a power
# (`2 ** n`): with n a client's value, one event could make the process build gigabytes,
# or compute for hours, before any send.
MOST_REPEATED = 100_000
MOST_POWER_BITS = 10_000
# The text methods whose first argument is the width of the text they make.
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


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
    return value


@pass_eval_context
def _printing_join(
    eval_ctx: EvalContext, value: Any, d: str = "", attribute: str | int | None = None
) -> str:
    """Jinja's ``join``, each item printed as ``{{ ... }}`` prints it: Jinja's own gave
    Python's spelling (``a, None, True``)."""
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    return do_join(eval_ctx, [as_printed(item) for item in value], d)


def _printing_string(value: Any) -> str:
    """Jinja's ``string``, the value printed as ``{{ ... }}`` prints it (``true``, not
    ``True``), text marked safe kept so."""
    return soft_str(as_printed(value))


class _Printed:
    """A client's value (true, null, a list) that ``%s`` and ``%r`` print as ``{{ ... }}``
    does, and ``%d`` or ``%f`` still read as the number it is (true as 1)."""

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


def _printed_for_format(value: Any) -> Any:
    return _Printed(value) if value is None or type(value) in (bool, list, dict) else value


def _printing_format(value: str, *args: Any, **kwargs: Any) -> str:
    """Jinja's ``format``, a value ``%s`` or ``%r`` takes printed as ``{{ ... }}`` prints
    it (``true``, not ``True``); ``%d`` still makes true 1."""
    if kwargs:
        kwargs = {key: _printed_for_format(item) for key, item in kwargs.items()}
    return do_format(value, *[_printed_for_format(item) for item in args], **kwargs)


def _is_text(node: nodes.Expr) -> bool:
    """Whether ``node`` is text written in the template, which prints as it is."""
    return isinstance(node, nodes.Const) and type(node.value) is str


class _PrintingConcatenation(CodeGenerator):
    """Jinja's code, with each side of ``~`` printed as ``{{ ... }}`` prints it: Jinja's
    own turned them into text Python's way (``"Auto-pay: " ~ on`` gave "Auto-pay: True")."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        printer = nodes.EnvironmentAttribute("printed")
        parts: list[nodes.Expr] = [
            part if _is_text(part) else nodes.Call(printer, [part], [], None, None)
            for part in node.nodes
        ]
        super().visit_Concat(nodes.Concat(parts, lineno=node.lineno), frame)


class DataSandbox(SandboxedEnvironment):
    """The sandbox, reading a plain dict's keys before its attributes.

    Templates see ``event`` and ``user`` as dicts of data, so ``user.items`` means the
    trait called ``items``, not the dict method; and a key found at once skips the
    sandbox's attribute checks, which cost more than the rest of a render. A name that
    is neither a key nor a dict attribute (an absent optional trait) is undefined at
    once, as the sandbox would conclude after its checks. An absent one named like a
    dict method (``user.items``, ``event.properties.values``) is undefined too, as any
    absent trait is, rather than the method printed into a message; only a call
    (``metadata.items()``) reaches the method.
    """

    intercepted_binops = frozenset({"*", "**", "%"})
    code_generator_class = _PrintingConcatenation
    printed = staticmethod(as_printed)  # what the code for `~` calls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._absent_method = _method_or_absent(self.undefined)
        # Filters are called directly, not through `call`: the padding ones check here.
        self.filters = {
            **self.filters,
            "batch": _bounded_count("batch", self.filters["batch"]),
            "center": _bounded_center(self.filters["center"]),
            "format": _bounded_format(_printing_format),
            "indent": _bounded_indent(self.filters["indent"]),
            "join": _printing_join,
            "slice": _bounded_count("slice", sync_do_slice),  # ours render synchronously
            "string": _printing_string,
        }

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        text = getattr(obj, "__self__", None)
        if type(text) is str and getattr(obj, "__name__", None) in _PADDING_METHODS:
            width = args[0] if args else kwargs.get("width")
            _check_padding(obj.__name__, width, lines=1)
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                if _is_repeated(items, times) and len(items) * times > MOST_REPEATED:
                    raise SecurityError(
                        f"{times:,} repetitions of {len(items):,} items would be more "
                        f"than {MOST_REPEATED:,} long"
                    )
        elif operator == "%":
            if isinstance(left, str):
                _check_printf_sizes(left, right)
        elif _is_whole(left) and _is_whole(right) and left.bit_length() * right > MOST_POWER_BITS:
            raise SecurityError(f"{left} ** {right} is more than {MOST_POWER_BITS:,} bits")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """A text's ``format`` or ``format_map``, refusing a width or precision past the
        limit (``"{:>{}}".format(name, n)`` pads as ``ljust(n)`` does) before formatting."""
        formats = super().wrap_str_format(value)
        if formats is None:
            return None
        text, by_name = value.__self__, value.__name__ == "format_map"
        checker = _SizeCheckingFormatter(self)

        def bounded(*args: Any, **kwargs: Any) -> str:
            if by_name and len(args) == 1 and not kwargs:
                checker.vformat(text, (), args[0])
            elif not by_name:
                checker.vformat(text, args, kwargs)
            return formats(*args, **kwargs)

        return bounded

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                if attribute not in _DICT_ATTRIBUTES:
                    return self.undefined(obj=obj, name=attribute)
                method = super().getattr(obj, attribute)
                if isinstance(method, Undefined):  # refused by the sandbox
                    return method
                return self._absent_method(obj, attribute, method)
        return super().getattr(obj, attribute)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Jinja chains a template's globals over the environment's so that later changes
        # to either show through; ours never change after loading, and every render
        # copied the chain key by key. A plain dict renders the same, faster.
        return {**self.globals, **(d or {})}


_DICT_ATTRIBUTES = frozenset(dir(dict))


def _check_padding(name: str, width: Any, lines: int) -> None:
    """Refuse padding ``lines`` lines to ``width`` when that makes a text past the limit."""
    if _is_whole(width) and width * lines > MOST_REPEATED:
        times = f" on {lines:,} lines" if lines > 1 else ""
        raise SecurityError(
            f"{name}({width:,}){times} would make a text more than {MOST_REPEATED:,} long"
        )


class _SizeCheckingFormatter(SandboxedFormatter):
    """Refuses a field whose width or precision, its nested fields filled in, is past the
    limit, before formatting it (a nested field's text is the spec of the one around it)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        for size in _DIGITS.findall(format_spec):
            _check_size("format", size)
        return str(super().format_field(value, format_spec))


_DIGITS = re.compile(r"[0-9]+")
# A printf-style conversion: its mapping key, flags, width, precision and type.
_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]*))?[hlL]?(.)?", re.S)


def _check_printf_sizes(text: str, values: Any) -> None:
    """Refuse ``text % values`` when a width or precision, written or taken from
    ``values`` by ``*``, is past the limit: ``"%*s" % (n, name)`` pads as ``ljust(n)``."""
    written, taken = _printf_sizes(text)
    for size in written:
        _check_size("%", size)
    if taken:
        given = values if type(values) is tuple else (values,)
        for index in taken:
            _check_size("%", given[index] if index < len(given) else None)


@lru_cache(maxsize=1024)
def _printf_sizes(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The sizes ``text`` writes as digits past the limit, and the indexes of the values
    its ``*`` sizes take. A template formats with the same few texts for every message:
    each is read once."""
    written: list[str] = []
    taken: list[int] = []
    index = 0
    for match in _PRINTF_FIELD.finditer(text):
        width, precision, conversion = match.groups()
        if conversion == "%":
            continue
        for size in (width, precision):
            if size == "*":
                taken.append(index)
                index += 1
            elif size:
                try:
                    _check_size("%", size)
                except SecurityError:  # refused at each use, as a size taken by `*` is
                    written.append(size)
        index += 1
    return tuple(written), tuple(taken)


def _check_size(how: str, size: Any) -> None:
    """Refuse a width or precision ``size`` (written digits, or a number) past the limit."""
    if isinstance(size, str):
        # A text of thousands of digits int() refuses to read is past the limit anyway.
        digits = size.lstrip("0") or "0"
        size = int(digits) if len(digits) <= 30 else 10**30
    too_big = _is_whole(size) and abs(size) > MOST_REPEATED
    size_text = f"{size:,}" if _is_whole(size) else ""
    if too_big:
        raise SecurityError(
            f"{how} with a width or precision of {size_text} would make a text more than "
            f"{MOST_REPEATED:,} long"
        )


def _bounded_format(format_filter: Callable[..., str]) -> Callable[..., str]:
    def bounded(value: str, *args: Any, **kwargs: Any) -> str:
        _check_printf_sizes(str(value), kwargs or args)
        return format_filter(value, *args, **kwargs)

    return bounded


def _bounded_count(name: str, make_lists: Callable[..., Any]) -> Callable[..., Any]:
    """``batch`` or ``slice``, refusing more than the limit of lines or slices: each is a
    list of its own (``slice(n)`` makes n lists), and ``batch(n, fill)`` pads to n."""

    def bounded(value: Any, count: int, *args: Any, **kwargs: Any) -> Any:
        if _is_whole(count) and count > MOST_REPEATED:
            raise SecurityError(f"{name}({count:,}) would make more than {MOST_REPEATED:,} items")
        return make_lists(value, count, *args, **kwargs)

    return bounded


def _bounded_center(center: Callable[..., str]) -> Callable[..., str]:
    def bounded(value: str, width: int = 80) -> str:
        _check_padding("center", width, lines=1)
        return center(value, width)

    return bounded


def _bounded_indent(indent: Callable[..., str]) -> Callable[..., str]:
    def bounded(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        # Each line gets the indent: a client's text of many lines multiplies it.
        size = len(width) if isinstance(width, str) else width
        _check_padding("indent", size, lines=str(s).count("\n") + 1)
        return indent(s, width, first, blank)

    return bounded


def _is_whole(value: Any) -> bool:
    return type(value) is int


def _is_repeated(items: Any, times: Any) -> bool:
    """Whether ``items * times`` repeats a text or a list."""
    return isinstance(items, str | list | tuple) and _is_whole(times)


def _method_or_absent(undefined: type[Undefined]) -> Callable[[Any, str, Any], Undefined]:
    """What makes an ``undefined`` for an absent key named like a dict method, which calls
    that method when called."""

    class MethodOrAbsent(undefined):  # type: ignore[valid-type, misc]
        __slots__ = ("_method",)
        # What the sandbox and Jinja ask of a callable, which an undefined would answer.
        unsafe_callable = alters_data = False
        jinja_pass_arg = None

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return self._method(*args, **kwargs)

    def make(obj: Any, name: str, method: Any) -> Undefined:
        absent = MethodOrAbsent(obj=obj, name=name)
        absent._method = method
        return absent

    return make


def sandbox(undefined: type[Undefined], autoescape: bool) -> SandboxedEnvironment:
    """The environment every part is compiled in: a block tag's own line break dropped
    (``trim_blocks``) and the template's final newline dropped, as the README says."""
    return DataSandbox(
        undefined=undefined,
        autoescape=autoescape,
        trim_blocks=True,
        keep_trailing_newline=False,
        finalize=as_printed,
    )
