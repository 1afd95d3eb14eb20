"""What a template may make of a client's values: bounds on repetition, padding, format
widths and powers, past which a render is refused rather than build gigabytes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template, nodes, pass_context
from jinja2.compiler import Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedFormatter

from herald.rules.rendering.printing import PrintingConcatenation

# The largest text or list a template may make by repetition (`"*" * n`) or padding
# (`name.ljust(n)`, `text | indent(n)`), and the largest number, in bits, by a power
# (`2 ** n`): with n a client's value, one event could make the process build gigabytes,
# or compute for hours, before any send.
MOST_REPEATED = 100_000
MOST_POWER_BITS = 10_000
# The most characters a message's parts may hold together. The bounds above hold for one
# operation; a loop over a client's list repeats what it holds (a loop in a loop, the
# list's size squared), so a 1 MiB event could make a body of gigabytes.
MOST_RENDERED = 1_000_000
# The most items a render's loops may take together: a loop in a loop over a client's
# list takes its size squared, printing or not (`{% for a in xs %}{% for b in xs if a == b
# %}`), and 100,000 items made a render of hours.
MOST_LOOPED = 100_000
# The text methods whose first argument is the width of the text they make.
PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def bounded_render(template: Template, context: Mapping[str, Any]) -> str:
    """``template`` rendered, refused with SecurityError once its text passes
    ``MOST_RENDERED`` characters: read piece by piece as the template makes it, so that
    the refusal comes before the text is built whole."""
    pieces = []
    size = 0
    # The compiled template's own function, on a context of its own (a fresh one each
    # render: the loop count lives in it), rather than ``generate``, which passes each
    # piece on through a generator of its own: about 6,000 instructions a render. Its
    # one other work is to rewrite an error's traceback into the template's lines; the
    # error is the same, and ``TemplateSet.render`` keeps only its message.
    for piece in template.root_render_func(template.new_context(dict(context))):
        size += len(piece)
        if size > MOST_RENDERED:
            raise SecurityError(f"the message would be more than {MOST_RENDERED:,} characters")
        pieces.append(piece)
    return "".join(pieces)


@pass_context
def counted_items(context: Context, items: Any) -> Any:
    """``items``, each taken by a loop counted against the render's ``MOST_LOOPED``; its
    length stays readable (``loop.last``) without taking them."""
    return _Counted(context, items)


@pass_context
def loop_step(context: Context) -> None:
    """One step of a recursive loop counted against the render's ``MOST_LOOPED``."""
    _take_one(context)


def _take_one(context: Context) -> None:
    # Counted on the render's evaluation context: a call from inside a loop gets a
    # context of its own, derived with the loop's variables, which shares only that. In a
    # list, which `{% autoescape %}` keeps as it restores the context's other settings.
    taken = context.eval_ctx.__dict__.setdefault("herald_looped", [0])
    taken[0] += 1
    if taken[0] > MOST_LOOPED:
        raise SecurityError(f"the loops would take more than {MOST_LOOPED:,} items")


class _Counted:
    __slots__ = ("_context", "_items")

    def __init__(self, context: Context, items: Any) -> None:
        self._context = context
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            _take_one(self._context)
            yield item


class BoundedLoops(PrintingConcatenation):
    """Jinja's code, each loop taking its items through ``counted_items``: a filtered
    loop's items count too, kept or not. A recursive loop counts each step of its body
    instead, as its own calls (``loop(item.children)``) bring items of their own."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        items, body = node.iter, node.body
        if node.recursive:
            step = nodes.Call(nodes.EnvironmentAttribute("loop_step"), [], [], None, None)
            body = [nodes.ExprStmt(step, lineno=node.lineno), *body]
        else:
            counter = nodes.EnvironmentAttribute("counted_items")
            items = nodes.Call(counter, [items], [], None, None, lineno=node.lineno)
        counted = nodes.For(
            node.target, items, body, node.else_, node.test, node.recursive, lineno=node.lineno
        )
        super().visit_For(counted, frame)


def check_padding(name: str, width: Any, lines: int) -> None:
    """Refuse padding ``lines`` lines to ``width`` when that makes a text past the limit."""
    if is_whole(width) and width * lines > MOST_REPEATED:
        times = f" on {lines:,} lines" if lines > 1 else ""
        raise SecurityError(
            f"{name}({width:,}){times} would make a text more than {MOST_REPEATED:,} long"
        )


class SizeCheckingFormatter(SandboxedFormatter):
    """Refuses a field whose width or precision, its nested fields filled in, is past the
    limit, before formatting it (a nested field's text is the spec of the one around it)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        for size in _DIGITS.findall(format_spec):
            _check_size("format", size)
        try:
            return str(super().format_field(value, format_spec))
        except ValueError as exc:
            # A spec the value's type does not take (`{:,.2f}` of a text): Python's
            # ValueError, but a failure of the type, as `"%.2f" % text` is a TypeError, so
            # that the rule file's check refuses what every event of the type would fail.
            raise TypeError(str(exc)) from None


_DIGITS = re.compile(r"[0-9]+")
# A printf-style conversion: its mapping key, flags, width, precision and type.
_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]*))?[hlL]?(.)?", re.S)


def check_printf_sizes(text: str, values: Any) -> None:
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
    too_big = is_whole(size) and abs(size) > MOST_REPEATED
    size_text = f"{size:,}" if is_whole(size) else ""
    if too_big:
        raise SecurityError(
            f"{how} with a width or precision of {size_text} would make a text more than "
            f"{MOST_REPEATED:,} long"
        )


def bounded_format(format_filter: Callable[..., str]) -> Callable[..., str]:
    def bounded(value: str, *args: Any, **kwargs: Any) -> str:
        check_printf_sizes(str(value), kwargs or args)
        return format_filter(value, *args, **kwargs)

    return bounded


def bounded_count(name: str, make_lists: Callable[..., Any]) -> Callable[..., Any]:
    """``batch`` or ``slice``, refusing more than the limit of lines or slices: each is a
    list of its own (``slice(n)`` makes n lists), and ``batch(n, fill)`` pads to n."""

    def bounded(value: Any, count: int, *args: Any, **kwargs: Any) -> Any:
        if is_whole(count) and count > MOST_REPEATED:
            raise SecurityError(f"{name}({count:,}) would make more than {MOST_REPEATED:,} items")
        return make_lists(value, count, *args, **kwargs)

    return bounded


def bounded_center(center: Callable[..., str]) -> Callable[..., str]:
    def bounded(value: str, width: int = 80) -> str:
        check_padding("center", width, lines=1)
        return center(value, width)

    return bounded


def bounded_indent(indent: Callable[..., str]) -> Callable[..., str]:
    def bounded(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        # Each line gets the indent: a client's text of many lines multiplies it.
        size = len(width) if isinstance(width, str) else width
        check_padding("indent", size, lines=str(s).count("\n") + 1)
        return indent(s, width, first, blank)

    return bounded


def check_replace(text: Any, old: Any, new: Any, count: Any = None) -> None:
    """Refuse ``text.replace(old, new)`` when its result would pass ``MOST_RENDERED``
    characters, before it is built: a client's text and a client's value put in for each
    letter of it (``note | replace("a", user.pad)``) made gigabytes, each piece within the
    bounds above."""
    if not (type(text) is str and type(old) is str and type(new) is str):
        return  # another type's replace (Markup's is str's) or an error of its own
    grows = len(new) - len(old)
    if grows <= 0:
        return
    times = text.count(old) if old else len(text) + 1
    if is_whole(count) and count >= 0:
        times = min(times, count)
    _check_made("replace", len(text) + times * grows)


def check_join(items: Any, separator: Any) -> None:
    """Refuse joining ``items`` with ``separator`` when the separators alone would pass
    ``MOST_RENDERED`` characters: a client's list joined by a client's text (``xs |
    join(user.pad)``). What the items hold is there already; the separator is repeated."""
    if isinstance(separator, str) and hasattr(items, "__len__"):
        _check_made("join", len(separator) * max(len(items) - 1, 0))


def check_tabs(text: Any, tabsize: Any) -> None:
    """Refuse ``text.expandtabs(tabsize)`` past ``MOST_RENDERED`` characters."""
    if type(text) is str and is_whole(tabsize) and tabsize > 0:
        tabs = text.count("\t")
        _check_made("expandtabs", len(text) - tabs + tabs * tabsize)  # each tab at most


def _check_made(how: str, size: int) -> None:
    if size > MOST_RENDERED:
        raise SecurityError(
            f"{how} would make a text of {size:,} characters, more than the "
            f"{MOST_RENDERED:,} a message may hold"
        )


def bounded_replace(replace: Callable[..., str]) -> Callable[..., str]:
    """Jinja's ``replace`` filter, refusing what ``check_replace`` refuses."""

    def bounded(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> str:
        check_replace(str(s), old, new, count)
        return replace(eval_ctx, s, old, new, count)

    # Jinja hands the filter its evaluation context, as it did the one wrapped.
    bounded.jinja_pass_arg = replace.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def bounded_join(join: Callable[..., str]) -> Callable[..., str]:
    """The ``join`` filter, refusing what ``check_join`` refuses."""

    def bounded(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
        check_join(value, d)
        return join(eval_ctx, value, d, attribute)

    bounded.jinja_pass_arg = join.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def is_whole(value: Any) -> bool:
    return type(value) is int


def is_repeated(items: Any, times: Any) -> bool:
    """Whether ``items * times`` repeats a text or a list."""
    return isinstance(items, str | list | tuple) and is_whole(times)


# Words ``lipsum`` may make in all: each is up to a dozen characters with its space.
MOST_LOREM_WORDS = MOST_REPEATED // 12


def bounded_lipsum(lipsum: Callable[..., str]) -> Callable[..., str]:
    """``lipsum(n, html, min, max)``, refusing ``n`` paragraphs of up to ``max`` words past
    the limit: ``lipsum(n)`` with a client's n made a million paragraphs in a minute."""

    def bounded(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        if is_whole(n) and is_whole(max) and n * max > MOST_LOREM_WORDS:
            raise SecurityError(
                f"lipsum({n:,}) of up to {max:,} words would make a text more than "
                f"{MOST_REPEATED:,} long"
            )
        return lipsum(n, html, min, max)

    return bounded
