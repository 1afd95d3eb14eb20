"""A rule's template rendered on events that leave out what they may leave out.

The strict check renders on a sample holding every declared property and trait. But a
property not `required` may be absent from an event, and any trait from a user: a
template that uses one in arithmetic, a comparison or a `format` (`{{ "%.2f" |
format(event.properties.fee) }}`) fails on every such event, and each of them skips the
rule. For a receipt, that is a customer's message never sent. Said once at load instead,
with how to write it. A name the rule's condition reads is left present: a condition
that compares it is false when it is absent, so the template never sees it so; and so
are the rule's recipient and `unsubscribed`, which every render has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from herald.rules.definition import EventType
from herald.rules.eligibility import RECIPIENT_TRAIT
from herald.rules.rendering.template_set import TemplateProblem, TemplateSet
from herald.rules.rule_file.samples import sample_context


def absence_problems(
    templates: TemplateSet,
    template: str,
    event_type: EventType,
    traits: Mapping[str, str],
    present: Iterable[str],
) -> list[str]:
    """What fails when ``template`` is rendered on a sample of ``event_type`` without one
    of its optional properties or traits (each left out on its own), except those in
    ``present`` (paths such as ``user.x``, ``event.properties.x``)."""
    kept = set(present)
    optional = [
        ("event.properties", name)
        for name, spec in event_type.properties.items()
        if not spec.required and f"event.properties.{name}" not in kept
    ]
    optional += [("user", name) for name in traits if f"user.{name}" not in kept]
    try:
        templates.render(template, sample_context(event_type, traits))
    except TemplateProblem:
        # It fails on the sample's own values (an empty list's first item, a key of an
        # empty object): a client's event holds others, and which fail is theirs to say.
        return []
    problems: list[str] = []
    for owner, name in optional:
        sample = sample_context(event_type, traits)
        part = sample["user"] if owner == "user" else sample["event"]["properties"]
        del part[name]
        try:
            templates.render(template, sample)
        except TemplateProblem as exc:
            error = str(exc).removeprefix(f"template {template}: ")
            said = f"template {template} {_without(owner, name, event_type.name)}: {error}"
            if said not in problems:
                problems.append(said)
    return problems


def always_present(channel: str | None) -> set[str]:
    """The traits a rule on ``channel`` always has when its message is rendered: its
    recipient (without one the rule is skipped first), and ``unsubscribed``, which is
    ``[]`` when the user unsubscribed from nothing."""
    recipient = RECIPIENT_TRAIT.get(channel or "")
    return {"user.unsubscribed", *([f"user.{recipient}"] if recipient else [])}


def _without(owner: str, name: str, event_type: str) -> str:
    if owner == "user":
        return f"fails for a user without the trait {name} (all traits are optional)"
    return (
        f"fails on a sample {event_type} event without its optional property {name}, or with"
        " it null (declare it `required: true` if every event has it)"
    )
