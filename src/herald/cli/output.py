"""How a command speaks to the operator: lines on stderr, or JSON log lines when the logs
are JSON, and failing with one clear line."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from herald.config import WorkerSettings

if TYPE_CHECKING:
    from herald.rules.loader import RuleFileError

# emoji=False: Rich would print `:b:`, in a user id or a value a problem quotes, as an emoji.
console = Console(stderr=True, soft_wrap=True, emoji=False)


def counted(count: int, noun: str) -> str:
    """``count`` of ``noun``, plural unless one: "1 event", "2,000 events"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def say(settings: WorkerSettings, message: str, *, level: int = logging.INFO) -> None:
    """A line for the operator on stderr: as it is, or as a JSON log line when the logs are
    JSON, so that a log collector reading the stream finds one format in it. A line at
    ``logging.WARNING`` asks the operator to act: ``warning: `` starts its text."""
    if settings.log_format == "json":
        # Handed to the handlers whatever HERALD_LOG_LEVEL is, as the text line is printed
        # whatever it is: at WARNING, JSON logs lost the start-up lines and the "stopping"
        # one, which keeps an operator from killing a dispatcher in mid-send.
        cli = logging.getLogger("herald.cli")
        cli.handle(cli.makeRecord(cli.name, level, __file__, 0, message, (), None))
    else:
        prefix = "warning: " if level >= logging.WARNING else ""
        console.print(prefix + message, markup=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop with exit ``code``, saying why in one line: ``error: ...`` on stderr, or, in
    a process that logs JSON (``serve``, ``worker``), one JSON log line at ERROR, so that
    a log collector reading the stream can read why the process stopped too."""
    if _logs_json():
        cli = logging.getLogger("herald.cli")
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
