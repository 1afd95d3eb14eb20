"""The options the commands share, and the settings read from them over the ``HERALD_*``
environment."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings

from herald.cli.output import fail
from herald.config import IN_SECONDS, DatabaseSettings, Settings, WorkerSettings
from herald.observability.operator_lines import say


def default_of(setting: str) -> object:
    """The value ``setting`` takes when neither its option nor its variable gives one: the
    options' own defaults are None, so that the environment applies, and their help says
    this one instead."""
    return Settings.model_fields[setting].default


DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        help="sqlite:///path.db or postgresql://... "
        f"(default {default_of('database_url')}; env HERALD_DATABASE_URL)",
    ),
]
RulesOpt = Annotated[
    str | None,
    typer.Option(
        "--rules", metavar="PATH", help="rule file (default: the packaged one; env HERALD_RULES)"
    ),
]


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def settings_from(kind: type[SettingsT], **overrides: object) -> SettingsT:
    """The settings of ``kind`` (those the command reads, and no other) from the
    command's options (``overrides``, None where not given) over the ``HERALD_*``
    environment; exit 1 naming each setting that is wrong."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return kind(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        if issubclass(kind, WorkerSettings):
            _log_as_asked(exc)
        fail("invalid settings: " + "; ".join(_setting_problem(e, given) for e in exc.errors()))


def _log_as_asked(refused: ValidationError) -> None:
    """Log JSON when ``HERALD_LOG_FORMAT`` asks for it, though another setting was
    refused: the line saying why ``serve`` or ``worker`` will not start is then one JSON
    line, which a log collector reading the stream can read, not ``error: ...`` text."""
    from herald.observability.logging import configure_logging

    if any(error["loc"][:1] == ("log_format",) for error in refused.errors()):
        return  # the format itself is wrong: the operator learns why in plain text
    if os.environ.get("HERALD_LOG_FORMAT", "").strip().lower() == "json":
        configure_logging(fmt="json")


def database_url_from(option: str | None) -> str:
    """The database URL of a command that reads no other setting: ``--database``, else
    ``HERALD_DATABASE_URL``, else the default."""
    return settings_from(DatabaseSettings, database_url=option).database_url


def warn_of_unknown_variables(settings: WorkerSettings, environ: Mapping[str, str]) -> None:
    """Say which ``HERALD_*`` variables of ``environ`` are no setting: a misspelt one
    (``HERALD_DATABASE`` for ``HERALD_DATABASE_URL``) is ignored, and Herald runs on the
    default it was meant to replace."""
    known = [name.upper() for name in Settings.model_fields]
    for name in sorted(environ):
        setting = name.removeprefix("HERALD_")
        if setting != name and setting not in known:
            # Compared without the prefix, which every name shares.
            close = difflib.get_close_matches(setting, known, n=1)
            hint = f"; did you mean HERALD_{close[0]}?" if close else ""
            say(
                settings,
                f"{name} is not a Herald setting, and is ignored{hint}",
                level=logging.WARNING,
            )


def _setting_problem(error: ErrorDetails, given: Mapping[str, object]) -> str:
    name = str(error["loc"][0]) if error["loc"] else "settings"
    said = error["msg"].removeprefix("Value error, ")
    if name in IN_SECONDS:
        said = _bound_in_seconds(error) or said
    # Never echo a token or a key: a wrong one is still somebody's secret.
    if "token" not in name and "key" not in name and "input" in error:
        said += f" (got {error['input']!r})"
    # Named as the operator gave it: `--port 70000` is not a HERALD_PORT to look for.
    return f"{_option_of(name) if name in given else f'HERALD_{name.upper()}'}: {said}"


def _option_of(setting: str) -> str:
    """The command-line option that gives ``setting``."""
    return "--database" if setting == "database_url" else f"--{setting.replace('_', '-')}"


# How a bound's error is said of a setting in seconds, by pydantic's type of the error.
_BOUNDS = {
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be less than"),
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be more than"),
}
_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60))


def _bound_in_seconds(error: ErrorDetails) -> str | None:
    """The bound a setting in seconds is past, in days, hours or minutes as well as in
    seconds ("must be at most 366 days (31,622,400 s)"); None for any other error."""
    said = _BOUNDS.get(error["type"])
    bound = error.get("ctx", {}).get(said[0]) if said else None
    if said is None or not isinstance(bound, int | float):
        return None
    if bound == 0 and said[0] == "ge":
        return "must not be negative"
    return f"{said[1]} {_in_human_units(bound)}"


def _in_human_units(seconds: float) -> str:
    """``seconds`` in the largest unit that counts it whole, with the seconds themselves:
    ``366 days (31,622,400 s)``, ``90 s``."""
    plain = f"{int(seconds):,} s" if seconds == int(seconds) else f"{seconds:,} s"
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count:,} {unit}{'' if count == 1 else 's'} ({plain})"
    return plain
