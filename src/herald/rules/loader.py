"""Load and validate a rule file (YAML) into a ``RuleSet``.

Every problem is reported with the file, the rule (or event type) and what is wrong,
and all problems are collected before failing, so one run of ``herald rules check``
shows everything to fix. The sections the loader does not read itself (the providers and
delivery policy) are read by a function given to ``load_rule_file``, into the same list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from herald.rules.definition import EventType, Rule, RuleSet
from herald.rules.rendering.escaping import unescaped_values
from herald.rules.rendering.template_folder import read_template
from herald.rules.rendering.template_set import TemplateSet, not_utf8
from herald.rules.rule_file.condition_checks import condition_problems, condition_reads
from herald.rules.rule_file.declarations import read_event_types, read_traits
from herald.rules.rule_file.literal_checks import without_comments
from herald.rules.rule_file.reader import RuleUse, digest, read_rules
from herald.rules.rule_file.template_absence import absence_problems, always_present
from herald.rules.rule_file.template_checks import template_problems
from herald.rules.rule_file.yaml_document import YamlRefused, read_yaml

T = TypeVar("T")  # what a caller's ``read_settings`` makes of the rule file


class RuleFileError(ValueError):
    """The rule file is invalid; ``problems`` lists each one."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def default_rules_path() -> Path:
    return Path(str(resources.files("herald.rules") / "default.yaml"))


def load_ruleset(path: str | Path | None = None) -> RuleSet:
    ruleset, _ = load_rule_file(path, _no_settings)
    return ruleset


def load_rule_file(
    path: str | Path | None, read_settings: Callable[[dict[str, Any], list[str]], T]
) -> tuple[RuleSet, T]:
    """The rule set of the file at ``path`` (the packaged one when None), and what
    ``read_settings`` makes of the whole document. ``read_settings`` appends what it finds
    wrong to the list it is given, so ``RuleFileError`` lists the problems of the rules and
    of those settings together."""
    path = Path(path) if path is not None else default_rules_path()
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise RuleFileError(str(path), [_a_folder_given(path)]) from None
    except OSError as exc:
        raise RuleFileError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise RuleFileError(str(path), [f"the file {not_utf8(exc)}"]) from None
    return _parse(text, str(path), path.parent / "templates", read_settings)


def _a_folder_given(path: Path) -> str:
    """What to say of a folder named as the rule file: the one that holds it and its
    templates, most likely, whose YAML files are named so the right one can be picked."""
    files = sorted(str(found) for found in path.glob("*.y*ml") if found.is_file())
    if files:
        return f"a folder, not a rule file: name the file itself ({', '.join(files[:5])})"
    return "a folder, not a rule file: name the YAML file itself"


def parse_ruleset(text: str, *, source: str, template_dir: Path) -> RuleSet:
    ruleset, _ = _parse(text, source, template_dir, _no_settings)
    return ruleset


def _no_settings(_document: dict[str, Any], _problems: list[str]) -> None:
    return None


# Every section a rule file may have, whoever reads it (providers and delivery are read
# by the delivery settings). A misspelt one would otherwise be ignored: a `provider:`
# section would leave email on the development stub without a word.
SECTIONS = ("events", "traits", "rules", "templates_dir", "providers", "delivery")


def _is_section(key: Any) -> bool:
    # Keys starting with x- are the file's own, e.g. to hold YAML anchors.
    return key in SECTIONS or (isinstance(key, str) and key.startswith("x-"))


def _unknown_section(key: Any) -> str:
    return (
        f"{key}: not a section of a rule file ({', '.join(SECTIONS)}; "
        "keys starting with x- are left alone, e.g. for YAML anchors)"
    )


def _parse(
    text: str,
    source: str,
    template_dir: Path,
    read_settings: Callable[[dict[str, Any], list[str]], T],
) -> tuple[RuleSet, T]:
    data = _read_document(text, source)
    problems = [_unknown_section(key) for key in data if not _is_section(key)]
    event_types, refused_types = read_event_types(data.get("events"), problems)
    traits, refused_traits = read_traits(data.get("traits"), problems)
    rules, uses = read_rules(data.get("rules"), event_types, refused_types, problems, traits)
    for use in uses:
        if use.condition is not None:
            use.condition.declare(traits)
    templates, loadable = _templates(data, uses, template_dir, traits, problems)
    for use in uses:
        problems.extend(
            _sample_problems(use, templates, loadable, event_types, traits, refused_traits)
        )
    settings = read_settings(data, problems)
    if problems:
        raise RuleFileError(source, problems)
    version, versioned = _versions(data, rules, templates)
    ruleset = RuleSet(version, source, event_types, versioned, templates, traits)
    return ruleset, settings


def _versions(
    data: dict[Any, Any], rules: list[Rule], templates: TemplateSet
) -> tuple[str, tuple[Rule, ...]]:
    """The rule set's version, and its rules each with a version that covers its template:
    a template's text is part of its rule, so an edited message is another version."""
    texts = {rule.template: templates.source(rule.template) for rule in rules if rule.template}
    versioned = tuple(
        replace(rule, version=digest([rule.version, texts[rule.template]])[:8])
        if rule.template
        else rule
        for rule in rules
    )
    return (digest([data, texts]) if texts else digest(data))[:12], versioned


def _read_document(text: str, source: str) -> dict[Any, Any]:
    """The YAML mapping ``text`` holds; raises ``RuleFileError`` when it holds none, or one
    that cannot be digested into versions. Nothing in it is checked yet."""
    try:
        data = read_yaml(text, source)
    except YamlRefused as exc:
        raise RuleFileError(source, [str(exc)]) from None
    if not isinstance(data, dict):
        raise RuleFileError(source, [_not_a_mapping(data, text)])
    try:
        digest(data)
    except TypeError as exc:  # the versions are digests of the content
        raise RuleFileError(source, [_not_digested(data, exc)]) from None
    return data


# The whole numbers a digest holds: 64 bits, signed or not, as JSON parsers read them.
_DIGESTED_WHOLE_NUMBERS = range(-(2**63), 2**64)


def _not_digested(data: dict[Any, Any], exc: TypeError) -> str:
    """What to say of a document that cannot be digested into versions: a whole number
    past 64 bits (an amount in cents given a bound of twenty digits), with where it is."""
    found = _too_large(data, "")
    if found is None:
        return f"holds a value that cannot be hashed: {exc}"
    where, number = found
    return f"{where}: {number} is a whole number larger than a rule file may hold (64 bits)"


def _too_large(value: Any, where: str) -> tuple[str, int] | None:
    """The place (``providers.email.port``) and value of the first whole number in
    ``value`` past what a digest holds, if any."""
    if type(value) is int and value not in _DIGESTED_WHOLE_NUMBERS:
        return where, value
    if isinstance(value, dict):
        items = [(f"{where}.{key}" if where else str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        items = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    for place, item in items:
        found = _too_large(item, place)
        if found is not None:
            return found
    return None


def _not_a_mapping(data: Any, text: str) -> str:
    """What to say of a file whose YAML is no mapping: an empty one (saved before it was
    written, or truncated by a failed copy) is said to be so, not to be the wrong shape."""
    expected = "a rule file is a YAML mapping with `events` and `rules`"
    if data is None and not text.strip():
        return f"the file is empty: {expected}"
    if data is None:
        return f"the file holds no YAML but comments: {expected}"
    kind = "a list" if isinstance(data, list) else "text" if isinstance(data, str) else "a value"
    return f"must be a mapping with `events` and `rules`, but YAML read {kind}"


def _templates(
    data: dict[str, Any],
    uses: list[RuleUse],
    template_dir: Path,
    traits: dict[str, str],
    problems: list[str],
) -> tuple[TemplateSet, set[str]]:
    """The templates the rules name that load, and their names."""
    directory = template_dir
    named = data.get("templates_dir")
    if isinstance(named, str) and named.strip():
        directory = template_dir.parent / named
    elif "templates_dir" in data:
        # Not a path: a list or a number would be looked in as a folder named after it,
        # and an empty one would fall back to the default without a word. Its templates
        # are not looked for: each would be "not found" for this one reason.
        problems.append(
            f"templates_dir: must name the templates' folder, relative to the rule file's "
            f"(e.g. templates_dir: templates), got {named!r}"
        )
        return TemplateSet({}, traits), set()
    rules_by_template: dict[str, list[str]] = {}  # each template, with the rules naming it
    for use in uses:
        if use.template is not None:
            rules_by_template.setdefault(use.template, []).append(use.label)
    # One template at a time, so a broken one does not hide the problems of the others;
    # in the order the rules name them, as the author reads the file.
    loadable: dict[str, dict[str, str]] = {}
    for name, labels in rules_by_template.items():
        sources, said = read_template(directory, name)
        problems.extend(f"rule {label}: {one}" for label in labels for one in said)
        if sources is not None:
            loadable[name] = sources
            html = sources.get("body.html")
            unescaped = unescaped_values(f"{name}/body.html", html) if html else []
            problems.extend(f"rule {label}: {one}" for one in unescaped for label in labels)
    return TemplateSet(loadable, traits), set(loadable)


def _sample_problems(
    use: RuleUse,
    templates: TemplateSet,
    loadable: set[str],
    event_types: dict[str, EventType],
    traits: dict[str, str],
    refused_traits: frozenset[str],
) -> list[str]:
    """The rule's condition and template tried on samples of what its trigger's events
    hold (a rule's `after` event is only its anchor: conditions and templates see the
    trigger)."""
    if use.trigger is None:
        return []
    event_type = event_types[use.trigger]
    anchor = event_types.get(use.anchor) if use.anchor else None
    found = []
    if use.condition:
        found += condition_problems(use.condition, event_type, traits, refused_traits, anchor)
    if use.template in loadable:
        problems = template_problems(
            templates, use.template, event_type, traits, refused_traits, anchor
        )
        if not problems:  # rendered on every declared value: now without each optional one
            reads = condition_reads(without_comments(use.condition.source)) if use.condition else ()
            present = {*reads, *always_present(use.channel)}
            problems = absence_problems(templates, use.template, event_type, traits, present)
        found += problems
    return [f"rule {use.label}: {problem}" for problem in found]
