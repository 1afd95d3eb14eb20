"""How a process speaks to the operator, the command line and an API process alike:
lines on stderr, or JSON log lines when the logs are JSON."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from herald.config import WorkerSettings

# emoji=False: Rich would print `:b:`, in a user id or a value a problem quotes, as an emoji.
console = Console(stderr=True, soft_wrap=True, emoji=False)

# The logger the lines have always gone to, whichever layer says them: a log query on
# it finds the start-up and stop lines of a worker and of an API process alike.
OPERATOR_LOGGER = "herald.cli"


def say(settings: WorkerSettings, message: str, *, level: int = logging.INFO) -> None:
    """A line for the operator on stderr: as it is, or as a JSON log line when the logs are
    JSON, so that a log collector reading the stream finds one format in it. A line at
    ``logging.WARNING`` asks the operator to act: ``warning: `` starts its text."""
    if settings.log_format == "json":
        # Handed to the handlers whatever HERALD_LOG_LEVEL is, as the text line is printed
        # whatever it is: at WARNING, JSON logs lost the start-up lines and the "stopping"
        # one, which keeps an operator from killing a dispatcher in mid-send.
        operator = logging.getLogger(OPERATOR_LOGGER)
        operator.handle(operator.makeRecord(operator.name, level, __file__, 0, message, (), None))
    else:
        prefix = "warning: " if level >= logging.WARNING else ""
        console.print(prefix + message, markup=False)
