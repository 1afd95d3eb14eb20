"""A rule's template tried on a sample of its trigger when the rule file loads.

The sample holds every property the trigger's event type declares and every declared
trait, each a value of its declared type: a template that fails on it would fail on every
event, so it is refused once, saying what the rule file lacks.
"""

from __future__ import annotations

from collections.abc import Mapping

from herald.rules.definition import EventType
from herald.rules.samples import path_in, sample_context, undeclared
from herald.rules.templates import TemplateProblem, TemplateSet, UndeclaredName


def template_problems(
    templates: TemplateSet, template: str, event_type: EventType, traits: Mapping[str, str]
) -> list[str]:
    sample = sample_context(event_type, traits)
    try:
        templates.check(template, sample)
    except UndeclaredName as exc:
        path = path_in(sample, exc.owner, exc.name)
        if path is None:  # e.g. a key of an object property: not the rule file's to declare
            return [str(exc)]
        return [f"template {exc.where} uses {undeclared(path, event_type.name)}"]
    except TemplateProblem as exc:
        return [str(exc)]
    return []
