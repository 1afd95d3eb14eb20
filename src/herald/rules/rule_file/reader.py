"""Read the `rules` section of a rule file: each rule's keys checked, every problem of
every rule listed (prefixed with the rule's id), the rules that hold none returned."""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from collections.abc import Collection
from typing import Any, NamedTuple

import orjson

from herald.rules.conditions.condition import Condition, ConditionError
from herald.rules.definition import CHANNELS, EventType, Limit, Rule
from herald.rules.rendering.template_set import PARTS
from herald.rules.rule_file.declarations import NAME, description_problem, description_text
from herald.rules.rule_file.keys import (
    ALIKE,
    Problem,
    did_you_mean,
    is_folder_name,
    is_undeclared,
    read_after,
    read_category,
    read_enum,
    read_max_age,
)
from herald.rules.rule_file.samples import meant_alone

RULE_KEYS = {
    "id",
    "trigger",
    "when",
    "after",
    "max_age",
    "channel",
    "limit",
    "category",
    "template",
    "description",
}


class RuleUse(NamedTuple):
    """What a rule's condition and template are checked with. Gathered from every rule,
    whatever its other problems, so that one run lists them all."""

    # The rule as its problems name it: its id, and its place in `rules` too when another
    # rule has the same id, so that each problem says which of the two it is about.
    label: str
    # None when it is not a declared event type, or one declared wrongly (said already)
    trigger: str | None
    condition: Condition | None
    template: str | None
    # The `after` event type, when declared: what a name its trigger lacks may be meant for
    anchor: str | None = None
    channel: str | None = None  # when it is one Herald knows


def digest(value: Any) -> str:
    """The content hash that versions a file or a rule."""
    options = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    return hashlib.sha256(orjson.dumps(value, option=options, default=str)).hexdigest()


def read_rules(
    raw: Any,
    event_types: dict[str, EventType],
    refused_types: frozenset[str],
    problems: list[str],
    traits: Collection[str] = (),
) -> tuple[list[Rule], list[RuleUse]]:
    """The rules of the `rules` section that hold no problem, and what every rule's
    condition and template are to be checked with, the faulty ones' too. Each problem is
    appended to ``problems``; ``refused_types`` are event types declared wrongly, whose
    own problem is said already."""
    if not isinstance(raw, list):
        # Left out, or written with nothing under it, it is None: no list to find fault in.
        # An empty list is said on purpose (events recorded, nothing sent); nothing under
        # `rules:` is more likely a file not finished.
        if raw is None:
            problems.append(
                "`rules` is missing or has nothing under it: list the rules, each starting "
                "with `- id:`, or write `rules: []` for a file that sends nothing"
            )
        else:
            problems.append(
                f"`rules` must be a list, got {raw!r}: list the rules, each starting with `- id:`"
            )
        return [], []
    rules: list[Rule] = []
    uses: list[RuleUse] = []
    seen: dict[str, int] = {}  # each id, with the position of the first rule holding it
    duplicated = _duplicated_ids(raw)
    for index, spec in enumerate(raw):
        if not isinstance(spec, dict):
            problems.append(f"rule #{index + 1}: {_not_a_mapping(spec)}")
            continue
        if spec.get("id") in (None, ""):
            problems.append(f"rule #{index + 1}: needs an `id`")
            continue
        rule_id = str(spec["id"])
        label = f"{rule_id} (#{index + 1})" if rule_id in duplicated else rule_id
        before = len(problems)

        def bad(msg: str, label: str = label) -> None:
            problems.append(f"rule {label}: {msg}")

        if isinstance(spec["id"], bool):
            # YAML reads an unquoted true, yes or on as a boolean: the rule would be "True".
            bad(f"YAML read the id as a boolean ({spec['id']!r}): quote it, or name the rule")
        elif not NAME.fullmatch(rule_id):
            bad(
                "the id must be 1-64 letters, digits and underscores, starting with a letter "
                "(it is part of dedup keys)"
            )
        if rule_id in seen:
            bad(f"duplicate id: rules #{seen[rule_id]} and #{index + 1} both have it")
        seen.setdefault(rule_id, index + 1)
        rule, use = _read_rule(rule_id, label, spec, event_types, refused_types, traits, bad)
        uses.append(use)
        if rule is not None and len(problems) == before:
            rules.append(rule)
    return rules, uses


def _not_a_mapping(spec: Any) -> str:
    said = "must be a mapping of its keys (id, trigger, channel, ...)"
    if isinstance(spec, str) and NAME.fullmatch(spec):  # the rule's name alone
        return f"{said}, but YAML read {spec!r}: write `- id: {spec}` and its other keys beneath"
    return f"{said}, but YAML read {spec!r}"


def _duplicated_ids(raw: list[Any]) -> set[str]:
    """The ids more than one rule of ``raw`` has."""
    ids = Counter(
        str(spec["id"])
        for spec in raw
        if isinstance(spec, dict) and spec.get("id") not in (None, "")
    )
    return {rule_id for rule_id, count in ids.items() if count > 1}


def _read_rule(
    rule_id: str,
    label: str,
    spec: dict[Any, Any],
    event_types: dict[str, EventType],
    refused_types: frozenset[str],
    traits: Collection[str],
    bad: Problem,
) -> tuple[Rule | None, RuleUse]:
    """The rule ``spec`` describes, None when a key is wrong (each said to ``bad``); and
    what its condition and template are to be checked with, in any case."""
    unknown = set(spec) - RULE_KEYS
    trigger_as_on = any(key is True for key in unknown)
    if trigger_as_on:
        # `on: signup_completed`, as CI files write it: YAML 1.1 reads a bare `on` as true.
        bad(
            "a key YAML reads as true (`on`, `yes`, `y`): the event type that triggers a "
            "rule goes under `trigger`"
        )
    meant: dict[str, Any] = {}
    known = ", ".join(sorted(RULE_KEYS))
    for key in sorted(str(key) for key in unknown if key is not True):
        others = RULE_KEYS - set(spec) - set(meant)
        close = difflib.get_close_matches(key.lower(), others, n=1, cutoff=ALIKE)
        if close:
            meant[close[0]] = spec[key]
            bad(f"unknown key `{key}`: did you mean `{close[0]}`? (known: {known})")
        else:
            bad(f"unknown key `{key}` (known: {known})")
    # A misspelt key's value is read as the key it looks like: not said to be missing as
    # well, and its own mistakes found in the same run.
    spec = {**spec, **meant}
    given = spec.get("trigger")
    if isinstance(given, list):
        bad(_one_not_a_list("trigger", "event type", given))
    elif given is None:
        if not trigger_as_on:  # said above
            bad(f"needs `trigger`: the event type that triggers it ({sorted(event_types)})")
    elif is_undeclared(given, event_types, refused_types):
        bad(
            f"`trigger: {given}` is not a declared event type"
            f"{did_you_mean(given, event_types)} ({sorted(event_types)})"
        )
    channel = spec.get("channel")
    if channel is None:
        bad(f"needs `channel` (one of {list(CHANNELS)})")
    elif isinstance(channel, list):
        bad(_one_not_a_list("channel", "channel", channel))
    elif not isinstance(channel, str) or channel not in CHANNELS:
        bad(
            f"unknown channel {channel!r}{did_you_mean(channel, CHANNELS)}"
            f" (known: {', '.join(CHANNELS)})"
        )
    if "limit" in spec and spec["limit"] is None:
        bad(
            "`limit` is empty: write once_per_event (the default), once_per_user or"
            " once_per_user_per_day, or remove the key"
        )
        limit = None
    else:
        limit = read_enum(Limit, spec.get("limit", Limit.ONCE_PER_EVENT.value), "limit", bad)
    category = read_category(spec.get("category"), channel, bad)
    trigger_type = event_types.get(given) if isinstance(given, str) else None
    condition = _read_condition(spec, bad, trigger_type, traits)
    if "after" in spec and spec["after"] is None:
        bad("`after` is empty: give {event: TYPE, within: DURATION}, or remove the key")
    after = read_after(spec.get("after"), event_types, refused_types, bad)
    if "max_age" in spec and spec["max_age"] is None:
        bad("`max_age` is empty: give a duration (72h, 7d), or remove the key")
    max_age = read_max_age(spec.get("max_age"), bad)
    template = _read_template(spec.get("template"), channel, bad)
    description = spec.get("description")
    said = description_problem(description)
    if said:
        bad(said)
    trigger = given if isinstance(given, str) and given in event_types else None
    anchor = after.event_type if after is not None else None
    known_channel = channel if isinstance(channel, str) and channel in CHANNELS else None
    use = RuleUse(label, trigger, condition, template, anchor, known_channel)
    if limit is None or category is None:
        return None, use
    rule = Rule(
        id=rule_id,
        trigger=str(given),
        channel=str(channel),
        limit=limit,
        category=category,
        version=digest(spec)[:8],
        condition=condition,
        after=after,
        max_age=max_age,
        template=template,
        description=description_text(description).strip(),
    )
    return rule, use


def _one_not_a_list(key: str, noun: str, given: list[Any]) -> str:
    """What to say of ``key`` given a list: a rule has one, and each of several is a rule
    of its own (its id part of its messages' keys, its decisions told apart)."""
    named = [str(item) for item in given]
    if len(named) == 1:  # the one it has, written as a list
        return f"`{key}` takes one {noun}, not a list: write `{key}: {named[0]}`"
    each = " and ".join(named) if len(named) < 3 else ", ".join(named[:-1]) + f" and {named[-1]}"
    return (
        f"`{key}` takes one {noun}, not a list: write a rule for each of {each},"
        " each with an id of its own"
    )


def _read_condition(
    spec: dict[Any, Any], bad: Problem, trigger: EventType | None, traits: Collection[str]
) -> Condition | None:
    when = spec.get("when")
    if isinstance(when, bool):  # YAML reads `when: true` as its own true, not as text
        when = "true" if when else "false"
    if isinstance(when, list | dict):
        kind = "list" if isinstance(when, list) else "mapping"
        bad(f"`when` must be a CEL expression, but YAML read a {kind} in it: quote the expression")
    elif "when" in spec and (when is None or not str(when).strip()):
        # A condition left out by a slip would make the rule fire on every event.
        bad("`when` is empty: write the condition, or remove the key for a rule without one")
    elif when is not None:
        try:
            return Condition(str(when))
        except ConditionError as exc:
            # A name read alone (`amount > 5`): said with where it is declared.
            meant = meant_alone(exc.unknown, trigger, traits) if exc.unknown and trigger else ""
            bad(f"`when: {when}` {exc}{meant}{_cut_by_yaml(str(when))}")
    return None


def _template_named(written: Any) -> str:
    """``: write `template: hello``` for a template given as a path to its folder or to
    one of its parts (`templates/hello`, `hello/body.txt`); empty for anything else."""
    if not isinstance(written, str):
        return ""
    parts = [part for part in written.replace("\\", "/").split("/") if part not in ("", ".")]
    if parts and parts[-1] in PARTS:
        parts = parts[:-1]
    if len(parts) > 1 and parts[0] == "templates":
        parts = parts[1:]
    return f": write `template: {parts[0]}`" if len(parts) == 1 else ""


def _cut_by_yaml(when: str) -> str:
    """A hint when a condition that does not compile ends inside a string: YAML ends an
    unquoted value at ` #` and reads the rest as a comment (`user.name == "a #b"`)."""
    if when.count('"') % 2 == 0 and when.count("'") % 2 == 0:
        return ""
    return (
        "\n(it ends inside a string: where the line goes on with ` #`, YAML read that and "
        "the rest of the line as a comment; quote the whole condition, e.g. "
        """when: 'user.name == "a #b"')"""
    )


def _read_template(template: Any, channel: Any, bad: Problem) -> str | None:
    if template is not None and not is_folder_name(template):
        # The folder is looked up in templates/ (or templates_dir), not beside the file.
        bad(
            f"`template: {template!r}` must be the name of a folder in templates/ (or in the "
            f"folder templates_dir names), not a path{_template_named(template)}"
        )
        return None
    if template is None and channel in ("email", "sms"):
        # Without one, the user would get the rule's id as a subject and an empty body.
        bad(f"needs `template`: an {channel} rule sends the user a text it must say")
    return None if template is None else str(template)
