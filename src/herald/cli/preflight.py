"""The checks made before a process starts serving: its rule file, its database, and the
stub provider's file."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from herald.cli.database_opening import open_database
from herald.cli.output import fail, fail_on_rule_file
from herald.config import WorkerSettings
from herald.observability.operator_lines import say

if TYPE_CHECKING:
    from herald.delivery.setup import DeliveryPlan
    from herald.rules.definition import RuleSet


def checked_rules(
    path: str | Path | None,
    outbox: Path = Path(os.devnull),
    env: Mapping[str, str] | None = None,
) -> tuple[RuleSet, DeliveryPlan]:
    """The rule set of the file at ``path`` and its delivery plan (its stub provider to
    write ``outbox``, which nothing here opens; its providers' secrets read from ``env``,
    the process's environment when None): its providers and delivery settings are
    checked too; otherwise exit 1 listing every problem of the file, one a line."""
    from herald.bootstrap import load_rules_and_delivery
    from herald.rules.loader import RuleFileError

    try:
        ruleset, plan = load_rules_and_delivery(path, outbox=outbox, env=env)
    except RuleFileError as exc:
        fail_on_rule_file(exc)
    return ruleset, plan


def preflight(settings: WorkerSettings, *, create_database: bool) -> tuple[RuleSet, DeliveryPlan]:
    """Fail before serving on what would otherwise fail later: every problem of the rule
    file, as `herald rules check` lists them, or the database's, in one clear line; with
    ``create_database``, an absent SQLite file is created rather than refused. A process
    that delivers also needs the stub provider's file, if a channel uses it, writable.
    Returns the rule set and its delivery plan, the stub provider on that file."""
    from herald.bootstrap import outbox_path
    from herald.delivery.providers.stub import StubProvider
    from herald.store.database_url import DatabaseUrlError

    try:
        outbox = outbox_path(settings)
    except DatabaseUrlError:  # refused below, once the rule file's problems are listed
        outbox = Path(os.devnull)
    ruleset, plan = checked_rules(settings.rules, outbox)
    database = open_database(
        settings.database_url,
        schema="upgrade",
        create=create_database,
        progress=lambda step: say(settings, f"schema upgrade: {step}"),
    )
    sqlite_path = database.sqlite_path
    database.dispose()
    stubbed = any(isinstance(p, StubProvider) for p in plan.providers.values())
    if settings.dispatcher and stubbed:
        problem = _unwritable(outbox)
        if problem:
            fail(
                f"the stub provider cannot write {outbox}: {problem} (set HERALD_OUTBOX_FILE, "
                "or give the channels real providers in the rule file)"
            )
    holding_personal_data = [] if sqlite_path is None else _sqlite_files(sqlite_path)
    if settings.dispatcher and stubbed:
        holding_personal_data.append(outbox)
    _warn_of_files_others_can_read(settings, holding_personal_data)
    return ruleset, plan


def _sqlite_files(path: Path) -> list[Path]:
    """An SQLite database's file and the log files beside it, which hold its latest rows."""
    return [path, *(path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal"))]


def _warn_of_files_others_can_read(settings: WorkerSettings, paths: list[Path]) -> None:
    """Say which of ``paths`` users other than their owner may read. Herald creates them
    readable by their owner alone, but one another tool made (`sqlite3`, a copy, a
    `touch`) follows the umask, often readable by every user of the machine, who could
    then read every user's traits and messages. Said, not changed: a group may have been
    let in on purpose (a backup's)."""
    for path in paths:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:  # not there (yet): Herald will create it privately
            continue
        if mode & 0o077:
            say(
                settings,
                f"{path.resolve()} can be read by other users of this machine (mode "
                f"{mode:04o}), though it holds personal data: `chmod 600 {path.resolve()}`",
                level=logging.WARNING,
            )


def _unwritable(path: Path) -> str | None:
    from herald.delivery.providers.stub_file import not_a_file

    folder = path.parent
    if not folder.is_dir():
        return "its folder does not exist"
    try:
        # A folder (HERALD_OUTBOX_FILE naming the one the file should go in), a FIFO
        # or a device: stat alone, as opening a FIFO to learn it is one waits for a reader.
        problem = not_a_file(path.stat().st_mode)
    except FileNotFoundError:
        problem = None
    if problem is not None:
        return problem
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not path.exists() and not os.access(folder, os.W_OK):
        return "its folder is read-only"
    return None
