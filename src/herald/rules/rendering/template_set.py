"""Message templates: Jinja2 in a sandbox, a subject, a text body and an optional HTML body.

A template lives in a folder named after it (read by ``template_folder``):
``subject.txt``, ``body.txt`` and optionally ``body.html`` (autoescaped). Templates are
compiled and test-rendered when the rule file loads, so a broken one stops ``herald rules
check`` and start-up, not a send.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jinja2 import Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from herald.domain.immutable import immutable
from herald.domain.properties import PYTHON_TYPES, type_matches
from herald.rules.rendering.hints import other_syntax
from herald.rules.rendering.limits import MOST_RENDERED, bounded_render
from herald.rules.rendering.sandbox import sandbox
from herald.rules.rendering.values import (
    Absent,
    AbsentUsed,
    Mistyped,
    NamingUndefined,
    UndefinedRead,
    absent_use,
    mistyped_hint,
)

PARTS = ("subject.txt", "body.txt", "body.html")


class TemplateProblem(ValueError):
    """What is wrong with a template, as one message, or as one a part (``said``) where
    several parts are wrong at once."""

    def __init__(self, message: str, said: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.said = list(said) or [message]


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What to say of a file that is not UTF-8 (saved as Latin-1 by an editor, say)."""
    line = exc.object[: exc.start].count(b"\n") + 1
    return (
        f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}): save it as UTF-8"
    )


class UndeclaredName(TemplateProblem):
    """A part (``where``, e.g. ``welcome/subject.txt``) read ``name`` from ``owner``, a
    mapping of the context that does not hold it."""

    def __init__(self, message: str, where: str, owner: Any, name: Any) -> None:
        super().__init__(message)
        self.where = where
        self.owner = owner
        self.name = name


class TemplateFailed(TemplateProblem):
    """A part raised one of Python's errors on a sample (a division by zero, an operator
    given text and a number). ``on_types`` when the types decide it (a ``TypeError``, or a
    macro that calls itself without end), so that other values of those types fail alike;
    otherwise the sample's values may."""

    def __init__(self, message: str, on_types: bool) -> None:
        super().__init__(message)
        self.on_types = on_types


def _python_error(exc: Exception) -> str:
    if isinstance(exc, TypeError) and "no loader" in str(exc):  # {% include %}, {% extends %}
        return "a template cannot include, import or extend another file: each part stands alone"
    return f"{type(exc).__name__}: {exc}"


@immutable
class Rendered:
    subject: str
    body: str
    html: str | None = None


class TemplateSet:
    """Compiled templates by name. ``render`` never raises on a missing optional trait:
    as an event is ingested, an absent value renders empty (the check proved the names); used
    in arithmetic, a comparison or a method call, it fails the render, naming it and what
    was tried.

    ``traits`` are the rule file's declared trait types. A trait the user's events gave
    another type (an object for ``first_name: string``) or null is false in a test, as an
    absent one is (``{{ user.first_name or "there" }}`` says "there"), and printed it
    fails the render, naming the trait: never Python's spelling of it in a customer's
    message (``Welcome aboard, {'given': 'Ada'}!``, ``Hi None,``)."""

    def __init__(
        self, sources: Mapping[str, Mapping[str, str]], traits: Mapping[str, str] | None = None
    ) -> None:
        self._sources = {name: dict(parts) for name, parts in sources.items()}
        # Each declared trait, with its type's name and the Python types that are it.
        self._traits = tuple(
            (name, kind, PYTHON_TYPES[kind]) for name, kind in (traits or {}).items()
        )
        text_env = sandbox(Absent, autoescape=False)
        html_env = sandbox(Absent, autoescape=True)
        self._templates = {
            name: _OnePass(name, parts, text_env, html_env) for name, parts in self._sources.items()
        }

    def source(self, name: str) -> dict[str, str]:
        """The text of each part of template ``name``."""
        return dict(self._sources[name])

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        sent_properties: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render all parts; ``TemplateProblem`` when the data makes a part fail (e.g. a
        trait of an unexpected type given to a filter). ``sent_properties``: the event's
        properties as the client sent them, those sent as null among them, which
        ``context`` leaves out: a failure on one says it is null, not absent."""
        user = context.get("user")
        if self._traits and isinstance(user, dict):
            declared = self._as_declared(user)
            if declared is not user:
                context = {**context, "user": declared}
        try:
            return self._templates[name].render(context)
        except AbsentUsed as exc:  # an optional value this event does not have
            said = absent_use(exc, context, sent_properties or {})
            raise TemplateProblem(f"template {name}: {said}") from None
        except UndefinedError as exc:  # a trait not of its declared type, printed
            raise TemplateProblem(f"template {name}: {exc}") from None
        except Exception as exc:  # the template is the operator's, the data the client's
            raise TemplateProblem(f"template {name}: {type(exc).__name__}: {exc}") from None

    def _as_declared(self, user: dict[str, Any]) -> dict[str, Any]:
        wrong = {
            name: kind
            for name, kind, types in self._traits
            if name in user and type(user[name]) not in types
        }
        if not wrong:
            return user
        return {
            key: _as_type(key, value, wrong[key]) if key in wrong else value
            for key, value in user.items()
        }

    def check(
        self, name: str, sample: Mapping[str, Any], parts: Collection[str] | None = None
    ) -> None:
        """Render strictly against a sample context (only ``parts`` when given): a name it
        lacks raises UndeclaredName, an error of Python's TemplateFailed, any other failure
        TemplateProblem. Rendered within the bounds an event's message is
        (``bounded_render``), so that one past them on the sample is said here, not left to
        skip the rule at each event."""
        rendered = 0
        for part, source in self._sources[name].items():
            if parts is not None and part not in parts:
                continue
            env = sandbox(NamingUndefined, autoescape=part.endswith(".html"))
            where = f"{name}/{part}"
            try:
                rendered += len(bounded_render(env.from_string(source), sample))
            except UndefinedRead as exc:
                raise UndeclaredName(
                    f"template {where}: {exc}", where, exc.owner, exc.name
                ) from None
            except TemplateError as exc:
                raise TemplateProblem(f"template {where}{_said(exc, source)}") from None
            except Exception as exc:  # the template's own arithmetic, filters and calls
                # A macro calling itself fails whatever the values, as a type error does,
                # and so does a range past the sandbox's bound (range(200000)).
                on_types = isinstance(exc, TypeError | RecursionError | OverflowError)
                raise TemplateFailed(f"template {where}: {_python_error(exc)}", on_types) from None
        if rendered > MOST_RENDERED:  # the parts are one message, rendered in one pass
            raise TemplateProblem(
                f"template {name}: the message would be more than {MOST_RENDERED:,} characters"
            )


def compile_problems(name: str, parts: Mapping[str, str]) -> list[str]:
    """What stops each of ``parts`` of template ``name`` compiling, one problem a part:
    the parts a template has, checked alone where it lacks one it needs."""
    text_env = sandbox(Absent, autoescape=False)
    html_env = sandbox(Absent, autoescape=True)
    return _compiled(name, parts, text_env, html_env)[1]


def _compiled(
    name: str,
    parts: Mapping[str, str],
    text_env: SandboxedEnvironment,
    html_env: SandboxedEnvironment,
) -> tuple[dict[str, Template], list[str]]:
    """Each part of ``parts`` that compiles, and what stops each other one compiling."""
    compiled = {}
    broken = []
    for part, source in parts.items():
        env = html_env if part.endswith(".html") else text_env
        try:
            compiled[part] = env.from_string(source)
        except TemplateError as exc:
            broken.append(f"template {name}/{part}{_said(exc, source)}")
        # Jinja's parser recurses once per level of nesting, and Python's refuses the
        # code Jinja writes for 200 levels (`a or b or ...`, a chain of filters).
        except (RecursionError, SyntaxError):
            broken.append(f"template {name}/{part}: nested too deeply for Jinja to compile")
    return compiled, broken


def _said(exc: TemplateError, source: str) -> str:
    """Jinja's error, after its part's name: a syntax error with the line it is on, and
    how Jinja writes what that line wrote as Liquid or Handlebars does."""
    if isinstance(exc, TemplateSyntaxError):
        return f" line {exc.lineno}: {exc.message}{other_syntax(source, exc.lineno)}"
    return f": {exc}"


def _as_type(name: str, value: Any, declared: str) -> Any:
    """A trait's ``value`` not of the Python type its ``declared`` one parses into."""
    if declared == "integer" and type_matches(value, "integer"):
        return int(value)  # written 3.0, as JSON allows an integer: printed 3
    return Mistyped(hint=mistyped_hint(name, value, declared), name=name)


# The newline Jinja drops from the end of a template (keep_trailing_newline=False), as its
# lexer sees one: \r\n, \r or \n, once.
_FINAL_NEWLINE = re.compile(r"(?:\r\n|\r|\n)\Z")


def _alone(source: str) -> str:
    """``source`` without the final newline Jinja would drop from it rendered alone: joined
    to the next part, its end is no longer the template's."""
    return _FINAL_NEWLINE.sub("", source, count=1)


class _OnePass:
    """A template's parts (subject, text, HTML) rendered as one Jinja template, joined by a
    separator no part contains: one context and one pass instead of three (measured: 10.7 us
    instead of 19.3 us for the insufficient-funds email, about a tenth of an event's
    ingestion). A value holding the separator would shift the parts: such a render is
    done again part by part."""

    _SEPARATOR = "\x1e"  # the ASCII record separator

    def __init__(
        self,
        name: str,
        parts: Mapping[str, str],
        text_env: SandboxedEnvironment,
        html_env: SandboxedEnvironment,
    ) -> None:
        # Every problem of the parts at once, not the first alone: an author who wrote
        # them all in another template language hears of each in one check.
        broken = []
        if "subject.txt" not in parts or "body.txt" not in parts:
            broken.append(f"template {name!r} needs subject.txt and body.txt")
        if any(self._SEPARATOR in source for source in parts.values()):
            broken.append(f"template {name!r} contains the control character U+001E")
        self._parts, unbuilt = _compiled(name, parts, text_env, html_env)
        broken += unbuilt
        if broken:
            raise TemplateProblem("; ".join(broken), broken)
        source = _alone(parts["subject.txt"]) + self._SEPARATOR
        if "body.html" in parts:
            html = _alone(parts["body.html"])
            source += _alone(parts["body.txt"]) + self._SEPARATOR
            source += "{% autoescape true %}" + html + "{% endautoescape %}"
        else:
            # Last, the body's end is the whole template's: Jinja drops its final newline
            # as it would the part's alone. Dropped here as well, a second one would go (a
            # body ending in a blank line would lose it only when rendered in one pass).
            source += parts["body.txt"]
        self._whole = text_env.from_string(source)

    def render(self, context: Mapping[str, Any]) -> Rendered:
        pieces = bounded_render(self._whole, context).split(self._SEPARATOR)
        # As many pieces as the template has parts, unless a value held the separator (and
        # three pieces from a template without HTML would pass for one with it).
        if len(pieces) != len(self._parts):
            return self._render_each(context)
        return Rendered(pieces[0].strip(), pieces[1], pieces[2] if len(pieces) == 3 else None)

    def _render_each(self, context: Mapping[str, Any]) -> Rendered:
        html = self._parts.get("body.html")
        # Each part bounded alone: a rare render, and each bound still holds the memory.
        return Rendered(
            subject=bounded_render(self._parts["subject.txt"], context).strip(),
            body=bounded_render(self._parts["body.txt"], context),
            html=bounded_render(html, context) if html is not None else None,
        )
