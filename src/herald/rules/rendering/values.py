"""What a template sees where data is missing or not what the rule file declares.

Four kinds of undefined value: ``NamingUndefined`` for the strict check at load time,
which remembers the mapping a name was missing from, and ``AnyItem`` for an item it picks
from a sample's empty list; ``Absent`` for an optional value
when a message is rendered (as its event is ingested), empty when printed but an error
saying what was tried when used in arithmetic; ``Mistyped`` for a trait whose value is
not of its declared type.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NoReturn, cast

from jinja2 import ChainableUndefined, StrictUndefined, Undefined
from jinja2.exceptions import TemplateRuntimeError, UndefinedError
from jinja2.utils import missing

from herald.domain.properties import json_kind


class UndefinedRead(UndefinedError):
    def __init__(self, message: str | None = None, *, owner: Any, name: Any) -> None:
        super().__init__(message)
        self.owner = owner
        self.name = name


class NamingUndefined(StrictUndefined):
    """StrictUndefined whose error keeps the mapping the name was missing from, so that a
    check can tell ``user.x`` from ``event.properties.x`` (Jinja says 'dict object').

    What a filter gives for an item of an empty list (``first``, ``last``, ``min``,
    ``max``, ``random``) names nothing: the sample's lists are empty, a client's need not
    be, and a render prints it empty. It stands for any item (``AnyItem``) rather than
    refuse the template."""

    __slots__ = ()

    def __new__(
        cls,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> Any:
        if name is None and obj is missing and hint is not None:
            return AnyItem(hint)
        return super().__new__(cls)

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> None:
        reading = partial(UndefinedRead, owner=obj, name=name)
        super().__init__(hint, obj, name, cast(type[TemplateRuntimeError], reading))


# An item of each JSON type, as a client's list may hold.
_ITEMS: tuple[Any, ...] = (1, 1.5, "x", True, None, [], {})


def _on_any_item(use: Callable[..., Any], reflected: bool = False) -> Callable[..., Any]:
    """An operator that gives the item again when it works on an item of some type, and
    raises when it fails on every one (``- "a"``), as it would on every event."""

    def apply(self: AnyItem, *args: Any) -> Any:
        failures = []
        for item in _ITEMS:
            try:
                use(*args, item) if reflected else use(item, *args)
            except Exception as exc:  # what each type raises is its own
                failures.append(exc)
            else:
                return self
        raise TypeError(f"no item of a list, of any type, works here: {failures[0]}")

    return apply


class AnyItem(ChainableUndefined):
    """What the check gives for the item a filter picks from a sample's empty list:
    ``(lines | first) + 1`` works on a client's list of numbers. Used as some item could
    be, it is that item again, printed empty; used as no item could be, it fails."""

    __slots__ = ()

    __add__, __radd__ = _on_any_item(operator.add), _on_any_item(operator.add, True)
    __sub__, __rsub__ = _on_any_item(operator.sub), _on_any_item(operator.sub, True)
    __mul__, __rmul__ = _on_any_item(operator.mul), _on_any_item(operator.mul, True)
    __truediv__ = _on_any_item(operator.truediv)
    __rtruediv__ = _on_any_item(operator.truediv, True)
    __floordiv__ = _on_any_item(operator.floordiv)
    __rfloordiv__ = _on_any_item(operator.floordiv, True)
    __mod__, __rmod__ = _on_any_item(operator.mod), _on_any_item(operator.mod, True)
    __pow__, __rpow__ = _on_any_item(operator.pow), _on_any_item(operator.pow, True)
    __lt__, __le__ = _on_any_item(operator.lt), _on_any_item(operator.le)
    __gt__, __ge__ = _on_any_item(operator.gt), _on_any_item(operator.ge)
    __neg__, __pos__ = _on_any_item(operator.neg), _on_any_item(operator.pos)
    __abs__ = _on_any_item(abs)
    __round__ = _on_any_item(round)

    # `| int` and `| float` make a number of any item (0 of what is none).
    def __int__(self, *_args: Any) -> Any:
        return 0

    def __float__(self, *_args: Any) -> Any:
        return 0.0

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:  # a method of the item
        return self


class AbsentUsed(UndefinedError):
    """An absent value (``name`` read from ``owner``) used in ``what`` (an addition, a
    comparison), which needs a value."""

    def __init__(self, owner: Any, name: Any, what: str, hint: str | None = None) -> None:
        super().__init__(f"{name} is absent")
        self.owner = owner
        self.name = name
        self.what = what
        # Why a filter gave nothing, for a value no name was read for (`first` of an
        # empty list: "No first item, sequence was empty.").
        self.hint = hint


def _refused_use(what: str) -> Callable[..., NoReturn]:
    def fail(self: Undefined, *_args: Any) -> NoReturn:
        raise AbsentUsed(self._undefined_obj, self._undefined_name, what, self._undefined_hint)

    return fail


class Absent(ChainableUndefined):
    """An absent optional value in a render: empty printed, false in a test, absent again
    read further. Arithmetic, a comparison or a conversion with it fails, as with any
    undefined, but saying what was tried, where Jinja says only "'dict object' has no
    attribute 'fee'"."""

    __slots__ = ()

    __add__ = __radd__ = _refused_use("an addition (+)")
    __sub__ = __rsub__ = _refused_use("a subtraction (-)")
    __mul__ = __rmul__ = _refused_use("a multiplication (*)")
    __truediv__ = __rtruediv__ = _refused_use("a division (/)")
    __floordiv__ = __rfloordiv__ = _refused_use("a division (//)")
    __mod__ = __rmod__ = _refused_use("a remainder (%)")
    __pow__ = __rpow__ = _refused_use("a power (**)")
    __neg__ = _refused_use("a negation (-)")
    __pos__ = _refused_use("a unary plus (+)")
    # One wording for the four: Python asks either side (`5 < x` asks x whether it is
    # greater), so the operator asked is not always the one the template wrote.
    __lt__ = __le__ = __gt__ = __ge__ = _refused_use("a comparison (<, <=, > or >=)")
    __int__ = __float__ = __complex__ = _refused_use("a conversion to a number")
    # Without these, Python's own TypeError would name the undefined's class.
    __round__ = _refused_use("the `round` filter")
    __abs__ = _refused_use("the `abs` filter")
    # A method read from an absent value is that value again (it chains): the call is
    # what fails, and Jinja's own error named only "'dict object'".
    __call__ = _refused_use("a method call (such as `.title()`)")


def absent_use(
    exc: AbsentUsed, context: Mapping[str, Any], sent_properties: Mapping[str, Any]
) -> str:
    """What to say of ``exc``: the value named and what the template tried with it. A
    property in ``sent_properties`` as null is said to be null: "absent" had a reader
    looking for a client that left it out."""
    path = _read_path(context, exc.owner, exc.name)
    if exc.name is None and exc.hint:  # what a filter gave for nothing, none read by name
        said, test = f"the value a filter gave ({exc.hint.rstrip('.')})", "`is defined`"
    elif path is None:  # inside a value: a key of an object, an item of a list
        part = "key" if isinstance(exc.owner, Mapping) else "item"
        said, test = f"the {part} {exc.name!r}", "`is defined`"
    else:
        said, test = path, f"`{{% if {path} is defined %}}`"
    sent_null = (
        path == f"event.properties.{exc.name}"
        and exc.name in sent_properties
        and sent_properties[exc.name] is None
    )
    return (
        f"{said} is {'null' if sent_null else 'absent'}, and the template uses it in {exc.what}: "
        f"test it first with {test}, or give it a default with `| default(...)`"
    )


def _read_path(context: Mapping[str, Any], owner: Any, name: Any) -> str | None:
    """How a template reads ``name`` from ``owner``: ``user.x``, ``event.x`` or
    ``event.properties.x``; None for anything else, such as an object property's key."""
    event = context.get("event")
    parts = [("user", context.get("user"))]
    if isinstance(event, Mapping):
        parts += [("event", event), ("event.properties", event.get("properties"))]
    for path, part in parts:
        if part is not None and owner is part:
            return f"{path}.{name}"
    return None


class Mistyped(Undefined):
    """A trait whose value is not of its declared type: false in a test, like an absent
    one, but an error with ``hint`` when printed."""

    __slots__ = ()

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""  # unreachable: the line above raises


def mistyped_hint(name: str, value: Any, declared: str) -> str:
    return f"user.{name} is {json_kind(value)}, not the {declared} the rule file declares"
