"""``herald rules``: work with rule files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from herald.cli.options import settings_from
from herald.cli.preflight import checked_rules
from herald.cli.rule_trial import rules_try
from herald.config import RuleFileSettings

rules_app = typer.Typer(
    help="Rule files: `check` validates one and lists its rules and delivery; `try` shows "
    "what one decides for sample events.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
rules_app.command("try")(rules_try)


@rules_app.command("check")
def rules_check(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="PATH", help="rule file (default: the packaged one; env HERALD_RULES)"
        ),
    ] = None,
) -> None:
    """Validate a rule file (conditions, channels, limits, templates, providers, delivery)
    and list its rules; exit 1 listing every problem."""
    # Without a path, the file the server would load: HERALD_RULES read as `herald serve`
    # reads it, so that one set but empty is refused here too, not taken as unset.
    settings = settings_from(RuleFileSettings, rules=str(path) if path else None)
    ruleset, plan = checked_rules(settings.rules, outbox=_outbox(settings))
    # A list rather than a table: it stays readable at any width and through a pipe.
    # emoji=False: a condition's `":x:"` is listed as written, not as an emoji.
    out = Console(highlight=False, soft_wrap=True, emoji=False)
    out.print(f"{ruleset.source} (version {ruleset.version})", markup=False)
    for rule in ruleset.rules:
        # Only the id is markup: a template's name may hold brackets Rich would take as
        # its own (`t[b]` printed as `t`).
        out.print(
            f"\n[bold]{rule.id}[/] "
            + escape(
                f"v{rule.version}: on {rule.trigger}, {rule.channel}, "
                f"{rule.category.value}, {rule.limit.value}"
                + (f", template {rule.template}" if rule.template else "")
            )
        )
        if rule.description:
            out.print(_indented("  ", rule.description), markup=False)
        if rule.after:
            out.print(f"  after {rule.after.event_type} within {rule.after.span}", markup=False)
        if rule.max_age:
            out.print(f"  only for a trigger at most {rule.max_age.span} old", markup=False)
        if rule.condition:
            out.print(_indented("  when ", rule.condition.source), markup=False)
            for loop in rule.condition.costly_loops:
                out.print(f"  {loop.described()}", markup=False)
    out.print("\n[bold]delivery[/]")
    for line in (*plan.channels_described(), *plan.policy_described()):
        out.print(f"  {line}", markup=False)
    rules, types = len(ruleset.rules), len(ruleset.event_types)
    out.print(
        f"\nOK: {rules} rule{'' if rules == 1 else 's'} over "
        f"{types} event type{'' if types == 1 else 's'}"
    )


def _indented(head: str, text: str) -> str:
    """``text`` after ``head``, each further line of it under the first (a condition or a
    description written over many lines), so that it reads as its rule's, not at the
    margin as the next thing listed."""
    return head + text.replace("\n", "\n" + " " * len(head))


def _outbox(settings: RuleFileSettings) -> Path:
    """The stub provider's file, as ``herald serve`` would have it with these settings."""
    from herald.bootstrap import outbox_path
    from herald.store.database_url import DatabaseUrlError

    try:
        return outbox_path(settings)
    except DatabaseUrlError:  # the server would refuse it; the rule file is what is checked
        return Path("outbox.jsonl")
