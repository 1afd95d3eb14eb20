"""Message templates: Jinja2 in a sandbox, a subject, a text body and an optional HTML body.

A template lives in a folder named after it: ``subject.txt``, ``body.txt`` and
optionally ``body.html`` (autoescaped). Templates are compiled and test-rendered when
the rule file loads, so a broken one stops ``herald rules check`` and start-up, not a send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

PARTS = ("subject.txt", "body.txt", "body.html")


class TemplateProblem(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str
    html: str | None = None


class _DataSandbox(SandboxedEnvironment):
    """The sandbox, reading a plain dict's keys before its attributes.

    Templates see ``event`` and ``user`` as dicts of data, so ``user.items`` means the
    trait called ``items``, not the dict method; and a key found at once skips the
    sandbox's attribute checks, which cost more than the rest of a render. A name that
    is neither a key nor a dict attribute (an absent optional trait) is undefined at
    once, as the sandbox would conclude after its checks.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                if attribute not in _DICT_ATTRIBUTES:
                    return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Jinja chains a template's globals over the environment's so that later changes
        # to either show through; ours never change after loading, and every render
        # copied the chain key by key. A plain dict renders the same, faster.
        return {**self.globals, **(d or {})}


_DICT_ATTRIBUTES = frozenset(dir(dict))


def _environment(undefined: type[Undefined], autoescape: bool) -> SandboxedEnvironment:
    return _DataSandbox(
        undefined=undefined, autoescape=autoescape, trim_blocks=True, keep_trailing_newline=False
    )


class TemplateSet:
    """Compiled templates by name. ``render`` never raises on a missing optional trait:
    at send time an absent value renders empty (the check already proved the names)."""

    def __init__(self, sources: Mapping[str, Mapping[str, str]]) -> None:
        self._sources = {name: dict(parts) for name, parts in sources.items()}
        self._compiled: dict[str, dict[str, Any]] = {}
        self._combined: dict[str, Any] = {}
        text_env = _environment(ChainableUndefined, autoescape=False)
        html_env = _environment(ChainableUndefined, autoescape=True)
        for name, parts in self._sources.items():
            if "subject.txt" not in parts or "body.txt" not in parts:
                raise TemplateProblem(f"template {name!r} needs subject.txt and body.txt")
            compiled = {}
            for part, source in parts.items():
                env = html_env if part.endswith(".html") else text_env
                try:
                    compiled[part] = env.from_string(source)
                except TemplateError as exc:
                    raise TemplateProblem(f"template {name}/{part}: {exc}") from None
            self._compiled[name] = compiled
            self._combined[name] = _combine(name, parts, text_env)

    @classmethod
    def from_directory(cls, directory: Path, names: Iterable[str]) -> TemplateSet:
        sources: dict[str, dict[str, str]] = {}
        for name in names:
            folder = directory / name
            if not folder.is_dir():
                raise TemplateProblem(f"template {name!r} not found (no folder {folder})")
            sources[name] = {
                part: (folder / part).read_text(encoding="utf-8")
                for part in PARTS
                if (folder / part).is_file()
            }
        return cls(sources)

    def source(self, name: str) -> dict[str, str]:
        """The text of each part of template ``name``."""
        return dict(self._sources[name])

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """Render all parts; ``TemplateProblem`` when the data makes a part fail (e.g. a
        trait of an unexpected type given to a filter)."""
        try:
            pieces = self._combined[name].render(context).split(_SEPARATOR)
            # As many pieces as the template has parts; a value holding the separator adds
            # more (three from a template without HTML would pass for one with it).
            if len(pieces) == len(self._compiled[name]):
                html = pieces[2] if len(pieces) == 3 else None
                return Rendered(pieces[0].strip(), pieces[1], html)
            return self._render_parts(name, context)  # a value contained the separator
        except Exception as exc:  # the template is the operator's, the data the client's
            raise TemplateProblem(f"template {name}: {type(exc).__name__}: {exc}") from None

    def _render_parts(self, name: str, context: Mapping[str, Any]) -> Rendered:
        parts = self._compiled[name]
        html = parts.get("body.html")
        return Rendered(
            subject=parts["subject.txt"].render(context).strip(),
            body=parts["body.txt"].render(context),
            html=html.render(context) if html is not None else None,
        )

    def check(self, name: str, sample: Mapping[str, Any]) -> None:
        """Render strictly against a sample context; an unknown name raises TemplateProblem."""
        for part, source in self._sources[name].items():
            env = _environment(StrictUndefined, autoescape=part.endswith(".html"))
            try:
                env.from_string(source).render(sample)
            except TemplateError as exc:
                raise TemplateProblem(f"template {name}/{part}: {exc}") from None


# Rendering subject, text and HTML as one template costs one context instead of three.
_SEPARATOR = "\x1e"


def _combine(name: str, parts: Mapping[str, str], env: SandboxedEnvironment) -> Any:
    if any(_SEPARATOR in source for source in parts.values()):
        raise TemplateProblem(f"template {name!r} contains the control character U+001E")
    # Each part alone would lose one trailing newline (keep_trailing_newline=False).
    subject, body = parts["subject.txt"].removesuffix("\n"), parts["body.txt"].removesuffix("\n")
    source = subject + _SEPARATOR + body
    if "body.html" in parts:
        html = parts["body.html"].removesuffix("\n")
        source += _SEPARATOR + "{% autoescape true %}" + html + "{% endautoescape %}"
    return env.from_string(source)
