"""The Jinja sandbox templates render in, reading data the way a rule file author means it."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from jinja2 import Undefined
from jinja2.exceptions import SecurityError
from jinja2.filters import sync_do_slice
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from herald.rules.rendering.limits import (
    MOST_POWER_BITS,
    MOST_REPEATED,
    PADDING_METHODS,
    BoundedLoops,
    SizeCheckingFormatter,
    bounded_center,
    bounded_count,
    bounded_format,
    bounded_indent,
    bounded_join,
    bounded_lipsum,
    bounded_replace,
    check_join,
    check_padding,
    check_printf_sizes,
    check_replace,
    check_tabs,
    counted_items,
    is_repeated,
    is_whole,
    loop_step,
)
from herald.rules.rendering.printing import (
    as_printed,
    printing_arguments,
    printing_format,
    printing_join,
    printing_operand,
    printing_string,
    printing_tojson,
)
from herald.rules.rendering.values import Absent, AbsentUsed


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
    code_generator_class = BoundedLoops
    printed = staticmethod(as_printed)  # what the code for `~` calls
    counted_items = staticmethod(counted_items)  # what the code for a loop calls
    loop_step = staticmethod(loop_step)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._absent_method = _method_or_absent(self.undefined)
        self.globals = {**self.globals, "lipsum": bounded_lipsum(generate_lorem_ipsum)}
        self.policies["json.dumps_kwargs"] = {
            **self.policies["json.dumps_kwargs"],
            "default": _json_of_undefined,
        }
        # Filters are called directly, not through `call`: the padding ones check here.
        self.filters = {
            **self.filters,
            "batch": bounded_count("batch", self.filters["batch"]),
            "center": bounded_center(self.filters["center"]),
            "format": bounded_format(printing_format),
            "indent": bounded_indent(self.filters["indent"]),
            "join": bounded_join(printing_join),
            "replace": bounded_replace(self.filters["replace"]),
            "slice": bounded_count("slice", sync_do_slice),  # ours render synchronously
            "string": printing_string,
            "tojson": printing_tojson,
        }

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        text = getattr(obj, "__self__", None)
        if type(text) is str:
            _check_text_method(text, getattr(obj, "__name__", None), args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                if is_repeated(items, times) and len(items) * times > MOST_REPEATED:
                    raise SecurityError(
                        f"{times:,} repetitions of {len(items):,} items would be more "
                        f"than {MOST_REPEATED:,} long"
                    )
        elif operator == "%":
            if isinstance(left, str):
                check_printf_sizes(left, right)
                right = printing_operand(left, right)
        elif is_whole(left) and is_whole(right) and left.bit_length() * right > MOST_POWER_BITS:
            raise SecurityError(f"{left} ** {right} is more than {MOST_POWER_BITS:,} bits")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """A text's ``format`` or ``format_map``, refusing a width or precision past the
        limit (``"{:>{}}".format(name, n)`` pads as ``ljust(n)`` does) before formatting,
        and printing the values as ``{{ ... }}`` does."""
        formats = super().wrap_str_format(value)
        if formats is None:
            return None
        text, by_name = value.__self__, value.__name__ == "format_map"
        checker = SizeCheckingFormatter(self)

        def bounded(*args: Any, **kwargs: Any) -> str:
            if by_name and len(args) == 1 and not kwargs:
                checker.vformat(text, (), args[0])
                if type(args[0]) is dict:
                    args = (printing_arguments((), args[0])[1],)
            elif not by_name:
                checker.vformat(text, args, kwargs)
                args, kwargs = printing_arguments(args, kwargs)
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


def _json_of_undefined(value: Any) -> Any:
    """What ``tojson`` makes of a value JSON has no spelling for: an undefined (an absent
    value, a trait not of its declared type) fails saying which and why, as it does
    printed or in arithmetic, where JSON's error named its Python class."""
    if isinstance(value, Absent):
        raise AbsentUsed(
            value._undefined_obj,
            value._undefined_name,
            "the `tojson` filter",
            value._undefined_hint,
        )
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


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


def _check_text_method(text: str, name: str | None, args: Any, kwargs: Any) -> None:
    """Refuse a text method whose result a client's values could make past the limits,
    before it runs: padding, ``replace``, ``join`` and ``expandtabs``."""
    if name in PADDING_METHODS:
        check_padding(name, args[0] if args else kwargs.get("width"), lines=1)
    elif name == "replace" and len(args) >= 2:
        check_replace(text, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and args:
        check_join(args[0], text)
    elif name == "expandtabs":
        check_tabs(text, args[0] if args else kwargs.get("tabsize", 8))
