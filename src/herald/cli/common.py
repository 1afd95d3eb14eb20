"""What the commands share: options, settings, failing with one clear line, and the checks
made before a process starts serving."""

from __future__ import annotations

import difflib
import logging
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from rich.console import Console

from herald.config import DatabaseSettings, Settings, WorkerSettings

if TYPE_CHECKING:
    from herald.delivery.setup import DeliveryPlan
    from herald.rules.definition import RuleSet
    from herald.rules.loader import RuleFileError
    from herald.store.database import Database

console = Console(stderr=True, soft_wrap=True)


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


SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)


def settings_from(kind: type[SettingsT], **overrides: object) -> SettingsT:
    """The settings of ``kind`` (those the command reads, and no other) from the
    command's options (``overrides``, None where not given) over the ``HERALD_*``
    environment; exit 1 naming each setting that is wrong."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return kind(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        fail("invalid settings: " + "; ".join(_setting_problem(e, given) for e in exc.errors()))


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
    # Never echo a token: a wrong one is still somebody's secret.
    if "token" not in name and "input" in error:
        said += f" (got {error['input']!r})"
    # Named as the operator gave it: `--port 70000` is not a HERALD_PORT to look for.
    return f"{_option_of(name) if name in given else f'HERALD_{name.upper()}'}: {said}"


def _option_of(setting: str) -> str:
    """The command-line option that gives ``setting``."""
    return "--database" if setting == "database_url" else f"--{setting.replace('_', '-')}"


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C is (see ``terminating_as_interrupted``)."""


@contextmanager
def terminating_as_interrupted() -> Iterator[None]:
    """Within the block, SIGTERM (a ``timeout``, a cron job's or a service manager's stop)
    stops the command as Ctrl-C does, where it can say what is done, instead of killing
    it without a word."""

    def terminated(_signum: int, _frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def checked_rules(
    path: str | Path | None, outbox: Path = Path(os.devnull)
) -> tuple[RuleSet, DeliveryPlan]:
    """The rule set of the file at ``path`` and its delivery plan (its stub provider to
    write ``outbox``, which nothing here opens): its providers and delivery settings are
    checked too; otherwise exit 1 listing every problem of the file, one a line."""
    from herald.bootstrap import load_rules_and_delivery
    from herald.rules.loader import RuleFileError

    try:
        ruleset, plan = load_rules_and_delivery(path, outbox=outbox)
    except RuleFileError as exc:
        fail_on_rule_file(exc)
    return ruleset, plan


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


def open_database(
    url: str,
    *,
    schema: Literal["any", "current", "upgrade"],
    create: bool = False,
    writes: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Database:
    """The database at ``url``, or exit 1 with one line: a bad URL, an unreachable server,
    a SQLite file that does not exist (unless ``create``, which creates it readable by its
    owner alone), a schema this version cannot run on, or a database that refuses writes.
    ``schema``: ``"current"`` requires the schema to be current, ``"upgrade"`` upgrades a
    SQLite database first, ``"any"`` only checks that the database answers (neither its
    schema nor its writes). ``writes=False``: the command only reads, and may run on a
    read-only database (a PostgreSQL replica)."""
    from herald.store.database import Database, write_problem
    from herald.store.database_errors import database_said
    from herald.store.database_url import DatabaseUrlError
    from herald.store.migrate import SchemaMismatch, current_revision, ensure_current

    try:
        database = Database(url)
    except DatabaseUrlError as exc:
        fail(str(exc))
    path = database.sqlite_path
    if path is not None and not create and not path.exists():
        # Opening it would create an empty file beside the real one, e.g. in the folder
        # a maintenance command happened to be run from.
        database.dispose()
        fail(
            f"no SQLite database at {path.resolve()}: name Herald's database with --database "
            "or HERALD_DATABASE_URL (`herald db upgrade` creates a new one)"
        )
    if path is not None and not path.exists():
        _create_private(path)
    try:
        if schema == "any":
            current_revision(database)
        else:
            upgrade = schema == "upgrade" and database.is_sqlite
            ensure_current(database, auto_upgrade=upgrade, progress=progress)
    except SchemaMismatch as exc:
        database.dispose()
        fail(str(exc))
    except KeyboardInterrupt:
        # Ctrl-C while the database keeps the command waiting (a lock another process
        # holds, a server slow to answer): said, or the operator cannot tell what it did.
        _interrupted_opening(database, upgrading=schema == "upgrade")
    except Exception as exc:
        database.dispose()
        said = database_said(exc)
        if "readonly" in said:  # SQLite in a folder it cannot write its log to
            _refuses_writes(said, path)
        if path is not None and "unable to open" in said:  # SQLite's SQLITE_CANTOPEN
            fail(f"cannot open the SQLite database {path.resolve()}: {_why_unopenable(path)}")
        if path is not None and "not a database" in said:  # SQLite's SQLITE_NOTADB
            fail(
                f"{path.resolve()} is not an SQLite database: name Herald's database with "
                "--database or HERALD_DATABASE_URL"
            )
        fail(f"cannot reach the database: {type(exc).__name__}: {said}")
    # A command that writes must not start on a read-only database: a server would say
    # it is ready, and then refuse every event.
    try:
        refused = None if schema == "any" or not writes else write_problem(database)
    except KeyboardInterrupt:
        _interrupted_opening(database, upgrading=schema == "upgrade")
    if refused is not None:
        database.dispose()
        _refuses_writes(refused, path)
    return database


def _interrupted_opening(database: Database, *, upgrading: bool) -> NoReturn:
    """Exit 130 on Ctrl-C while the database kept the command waiting (a lock another
    process holds, a server slow to answer), saying what it left: when it upgrades the
    schema by itself, the revision it is at (an upgrade under way is rolled back whole,
    one done stays), else nothing was changed."""
    left = "nothing was changed"
    if upgrading and database.is_sqlite:
        from herald.store.migrate import current_revision

        try:
            left = f"the schema is at revision {current_revision(database) or 'none (empty)'}"
        except Exception:  # still unreadable: an upgrade under way was rolled back
            left = "the schema is where it was"
    database.dispose()
    fail(
        "interrupted while opening the database (waiting for it to answer, or for a lock "
        f"another process holds, or upgrading its schema): {left}",
        code=130,
    )


def _create_private(path: Path) -> None:
    """An empty SQLite file that only its owner may read: it will hold the audit's personal
    data, and SQLite, left to create it, follows the umask (often readable by every user).
    Its log files take the same permissions. An existing file is left as it is."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # another process created it meanwhile
        pass
    except OSError:  # a read-only folder: opening the database says so, in its words
        pass


def _why_unopenable(path: Path) -> str:
    """Why SQLite could not open (or create) ``path``, with what to do: its bare "unable to
    open database file" names neither the file nor the cause, which is almost always a
    command run as another user than the one who owns the database."""
    if path.is_dir():
        return "it is a folder; name a file in it"
    if not path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return (
                f"this user may not create files in its folder {path.parent.resolve()}: run "
                "as the user who owns that folder, or let this one write to it"
            )
        return "SQLite could not create it"
    if not os.access(path, os.R_OK):
        return "this user may not read it: run as the user who owns it, or give this one access"
    if not os.access(path.parent, os.X_OK):
        return f"this user may not enter its folder {path.parent.resolve()}"
    return "SQLite could not open it"


def _refuses_writes(said: str, sqlite_path: Path | None) -> NoReturn:
    where = f" ({sqlite_path.resolve()} and its folder must be writable)" if sqlite_path else ""
    fail(f"the database refuses writes: {said}{where}")


def preflight(settings: WorkerSettings, *, create_database: bool) -> tuple[RuleSet, DeliveryPlan]:
    """Fail before serving on what would otherwise fail later: every problem of the rule
    file, as `herald rules check` lists them, or the database's, in one clear line; with
    ``create_database``, an absent SQLite file is created rather than refused. A process
    that delivers also needs the stub provider's file, if a channel uses it, writable.
    Returns the rule set and its delivery plan, the stub provider on that file."""
    from herald.bootstrap import outbox_path
    from herald.delivery.stub import StubProvider
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
    database.dispose()
    stubbed = any(isinstance(p, StubProvider) for p in plan.providers.values())
    if settings.dispatcher and stubbed:
        problem = _unwritable(outbox)
        if problem:
            fail(
                f"the stub provider cannot write {outbox}: {problem} (set HERALD_OUTBOX_FILE, "
                "or give the channels real providers in the rule file)"
            )
    return ruleset, plan


def _unwritable(path: Path) -> str | None:
    folder = path.parent
    if not folder.is_dir():
        return "its folder does not exist"
    if path.is_dir():  # HERALD_OUTBOX_FILE naming the folder the file should go in
        return "it is a folder; name a file in it"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not path.exists() and not os.access(folder, os.W_OK):
        return "its folder is read-only"
    return None
