"""How a command fails with one clear line, on stderr or as a JSON log line when the logs
are JSON; the lines it says otherwise are ``herald.observability.operator_lines``'s."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn

import typer

from herald.observability.operator_lines import OPERATOR_LOGGER, console

if TYPE_CHECKING:
    from herald.rules.loader import RuleFileError


def counted(count: int, noun: str) -> str:
    """``count`` of ``noun``, plural unless one: "1 event", "2,000 events"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop with exit ``code``, saying why in one line: ``error: ...`` on stderr, or, in
    a process that logs JSON (``serve``, ``worker``), one JSON log line at ERROR, so that
    a log collector reading the stream can read why the process stopped too."""
    if _logs_json():
        cli = logging.getLogger(OPERATOR_LOGGER)
        cli.handle(cli.makeRecord(cli.name, logging.ERROR, __file__, 0, message, (), None))
    else:
        console.print("error:", message, style="bold red", markup=False)
    raise typer.Exit(code)


def _logs_json() -> bool:
    from herald.observability.logging import JsonFormatter

    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def fail_on_rule_file(exc: RuleFileError) -> NoReturn:
    """Exit 1 naming the rule file and listing its problems, one a line (in one JSON log
    line, when the logs are JSON)."""
    if _logs_json():
        fail(f"{exc.path}: {len(exc.problems)} problem(s): " + "; ".join(exc.problems))
    console.print(
        f"error: {exc.path}: {len(exc.problems)} problem(s)", style="bold red", markup=False
    )
    for line in exc.problems:
        console.print(f"  - {line}", markup=False)
    raise typer.Exit(1)
