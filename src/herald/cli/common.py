"""What the commands share: options, settings, failing with one clear line, and the checks
made before a process starts serving."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer
from rich.console import Console

from herald.config import Settings

if TYPE_CHECKING:
    from herald.store.database import Database

console = Console(stderr=True, soft_wrap=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", help="sqlite:///path.db or postgresql://... (env HERALD_DATABASE_URL)"
    ),
]
RulesOpt = Annotated[str | None, typer.Option("--rules", help="rule file (env HERALD_RULES)")]


def settings_from(**overrides: object) -> Settings:
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except Exception as exc:
        fail(f"invalid settings: {exc}")


def fail(message: str, code: int = 1) -> NoReturn:
    console.print("error:", message, style="bold red", markup=False)
    raise typer.Exit(code)


def delivery_problem(rules_path: Path) -> str | None:
    """What is wrong with the file's `providers` and `delivery` sections, if anything
    (the rule loader checks the rest). Building the plan opens nothing."""
    import yaml

    from herald.delivery.setup import DeliveryConfigError, build_delivery

    document = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    try:
        build_delivery(document, outbox=Path(os.devnull))
    except DeliveryConfigError as exc:
        return str(exc)
    return None


def open_database(
    url: str,
    *,
    schema: Literal["any", "current", "upgrade"],
    progress: Callable[[str], None] | None = None,
) -> Database:
    """The database at ``url``, failing with one line on a bad URL, an unreachable
    server or (``schema="current"``) a schema behind this version; ``"upgrade"``
    upgrades an embedded database first, ``"any"`` only checks that it answers."""
    from herald.store.database import Database, DatabaseUrlError
    from herald.store.migrate import SchemaOutdated, current_revision, ensure_current

    try:
        database = Database(url)
    except DatabaseUrlError as exc:
        fail(str(exc))
    try:
        if schema == "any":
            current_revision(database)
        else:
            upgrade = schema == "upgrade" and database.is_sqlite
            ensure_current(database, auto_upgrade=upgrade, progress=progress)
    except SchemaOutdated as exc:
        database.dispose()
        fail(str(exc))
    except Exception as exc:
        database.dispose()
        fail(f"cannot reach the database: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return database


def preflight(settings: Settings) -> None:
    """Fail before serving, with one clear line, on what would otherwise fail later."""
    from herald.rules.loader import RuleFileError, load_ruleset

    try:
        ruleset = load_ruleset(settings.rules)
    except RuleFileError as exc:
        fail(str(exc))
    problem = delivery_problem(Path(ruleset.source))
    if problem:
        fail(f"{ruleset.source}: {problem}")
    open_database(
        settings.database_url,
        schema="upgrade",
        progress=lambda step: console.print(f"schema upgrade: applied {step}"),
    ).dispose()
