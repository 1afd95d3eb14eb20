"""A rule's template rendered on a sample of its trigger when the rule file loads.

The sample is the one a condition is tried on (``samples``). A template that reads a name
the file does not declare, or fails whatever the declared values, would fail on every
event, and each event would skip the rule with the error as its reason: refused once
instead, naming what to fix. What fails only on some values is left to the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2.utils import missing

from herald.rules.definition import EventType
from herald.rules.rendering.template_set import (
    TemplateFailed,
    TemplateProblem,
    TemplateSet,
    UndeclaredName,
)
from herald.rules.rule_file.samples import (
    MISSPELT,
    declare_under,
    is_refused,
    misspelt_from,
    path_in,
    sample_context,
    undeclared,
    unknown_name,
)
from herald.rules.rule_file.template_reads import undeclared_paths

_MOST_UNDECLARED = 20
_STAND_IN = "x"  # prints, compares and filters as text would


def template_problems(
    templates: TemplateSet,
    template: str,
    event_type: EventType,
    traits: Mapping[str, str],
    refused_traits: frozenset[str],
    anchor: EventType | None = None,
) -> list[str]:
    """What is wrong with ``template`` rendered on a sample of ``event_type``: each name
    it reads that the rule file does not declare, or else the error it raises; empty when
    it renders. Names whose declaration was refused (``refused_traits``, the event type's
    ``refused``) are left out: their own problem is said already."""
    # Read in the text first: a render reads only the branches the sample's values take.
    problems = [
        f"template {template}/{part} uses {undeclared(path, event_type, traits, anchor=anchor)}"
        for part, source in templates.source(template).items()
        for path in undeclared_paths(source, event_type, traits)
        if not is_refused(path, event_type, refused_traits)
    ]
    # A name given a default, or tested for, is left to the events, unless it is a
    # misspelling of a declared one: then no event sends it, and the default goes to all.
    problems += [
        f"template {template}/{part} tests for {path} (or gives it a default), which the"
        f" rule file does not declare, and no event will send: did you mean {meant}?"
        f" (declare it under {declare_under(path, event_type)} if it is meant)"
        for part, source in templates.source(template).items()
        for path in undeclared_paths(source, event_type, traits, guarded=True)
        if (meant := misspelt_from(path, event_type, traits, MISSPELT)) is not None
    ]
    said = set(problems)
    sample = sample_context(event_type, traits)
    stood_in = False
    # Every undeclared name, not the first alone: each found stands in the sample for the
    # next try, so that one run of the check lists all the author must fix.
    for _ in range(_MOST_UNDECLARED):
        try:
            templates.check(template, sample)
        except UndeclaredName as exc:
            path = path_in(sample, exc.owner, exc.name)
            if path is None:  # a key of an object, an item of an array: the client's to send
                if _stand_in(exc.owner, exc.name):
                    stood_in = True
                    continue
                if exc.owner is _STAND_IN:  # read inside a stand-in: the client's value too
                    break
                if exc.owner is missing and isinstance(exc.name, str):
                    # A name read alone (`{{ first_name }}`, as other tools print a trait):
                    # said with where it is, and stood in for, as an undeclared one is.
                    alone = (
                        f"template {exc.where} uses {unknown_name(exc.name, event_type, traits)}"
                    )
                    if alone not in said:
                        problems.append(alone)
                        said.add(alone)
                    sample[exc.name] = _STAND_IN
                    stood_in = True
                    continue
                if stood_in:
                    # Read from what a stand-in gave (an item of its text, looped over
                    # where a list was meant): the stand-in's, not the template's.
                    problems += _failures_without_stand_ins(templates, template, event_type, traits)
                    break
                return [*problems, str(exc)]
            problem = (
                f"template {exc.where} uses {undeclared(path, event_type, traits, anchor=anchor)}"
            )
            if not is_refused(path, event_type, refused_traits) and problem not in said:
                problems.append(problem)
            exc.owner[exc.name] = _STAND_IN
            stood_in = True
            continue
        except Exception as exc:
            if not isinstance(exc, TemplateProblem):
                raise
            if stood_in:
                # Past a stand-in, a failure may be the stand-in's (text where a number was
                # wanted): only the parts that fail alike without any are said to.
                problems += _failures_without_stand_ins(templates, template, event_type, traits)
                break
            problems += _failure_on_types(exc, templates, template, event_type, traits)
        break
    return problems


def _failures_without_stand_ins(
    templates: TemplateSet, template: str, event_type: EventType, traits: Mapping[str, str]
) -> list[str]:
    """The failures of the parts of ``template`` that read no name the sample lacks (an
    object's key, an undeclared name), each part on a sample of its own."""
    problems = []
    for part in templates.source(template):
        try:
            templates.check(template, sample_context(event_type, traits), parts=(part,))
        except UndeclaredName:
            continue  # it reads what only a client's event holds, or what is said above
        except TemplateProblem as exc:
            problems += _failure_on_types(exc, templates, template, event_type, traits, part)
    return problems


def _failure_on_types(
    failed: TemplateProblem,
    templates: TemplateSet,
    template: str,
    event_type: EventType,
    traits: Mapping[str, str],
    part: str | None = None,
) -> list[str]:
    """``failed`` as the problem to report, unless it depends on the sample's values and
    is left to the events."""
    if isinstance(failed, TemplateFailed) and not _fails_on_every_number(
        failed, templates, template, event_type, traits, part
    ):
        return []
    return [str(failed)]


def _fails_on_every_number(
    failed: TemplateFailed,
    templates: TemplateSet,
    template: str,
    event_type: EventType,
    traits: Mapping[str, str],
    part: str | None = None,
) -> bool:
    """Whether a template (or its ``part``) that failed on the sample fails on its declared
    types: a ``TypeError`` with the sample's numbers whole as well as not (``range(amount)``
    takes an amount of 10, not of 10.5), as a condition's samples are tried."""
    if not failed.on_types:
        return False
    try:
        templates.check(
            template,
            sample_context(event_type, traits, whole_numbers=True),
            parts=None if part is None else (part,),
        )
    except TemplateFailed as exc:
        return exc.on_types
    except TemplateProblem:
        return True
    return False


def _stand_in(owner: Any, name: Any) -> bool:
    """Put a stand-in where a template read inside a value the sample holds empty (an
    object's key, an array's item): False where none can go."""
    if isinstance(owner, dict):
        owner[name] = _STAND_IN
        return True
    if isinstance(owner, list) and type(name) is int:
        owner.extend([_STAND_IN] * ((name + 1 if name >= 0 else -name) - len(owner)))
        return True
    return False
