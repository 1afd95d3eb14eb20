"""--help names the environment variable behind each option, and shows flags as flags."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from herald.cli.main import app
from herald.config import HANDED_DOWN, Settings, WorkerSettings


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (
            ["serve"],
            [
                "HERALD_HOST",
                "HERALD_PORT",
                "HERALD_DATABASE_URL",
                "HERALD_RULES",
                "HERALD_WORKERS",
                # Settings of their own, without an option: the help is where to learn of them.
                "HERALD_ADMIN_TOKEN",
                "HERALD_INGEST_TOKEN",
            ],
        ),
        (
            ["worker"],
            [
                "HERALD_DATABASE_URL",
                "HERALD_METRICS_PORT",
                "HERALD_METRICS_HOST",
                # The settings of the dispatcher's own that come from the environment alone.
                "HERALD_LOG_LEVEL",
                "HERALD_LOG_FORMAT",
                "HERALD_OUTBOX_FILE",
                "HERALD_SQLITE_FLUSH_EACH_COMMIT",
                "HERALD_POSTGRES_STATEMENT_TIMEOUT",
            ],
        ),
    ],
    ids=["serve", "worker"],
)
def test_help_names_the_environment_variables(command: list[str], variables: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    for variable in variables:
        assert variable in result.output


@pytest.mark.parametrize(
    ("command", "settings"),
    [(["serve"], Settings), (["worker"], WorkerSettings)],
    ids=["serve", "worker"],
)
def test_help_names_the_variable_of_every_setting_the_command_reads(
    command: list[str], settings: type[WorkerSettings]
) -> None:
    # Read from the settings, so that a setting added later is named too (the test
    # above lists those there were).
    text = " ".join(help_of(command).split())
    # A worker always delivers, whatever HERALD_DISPATCHER says: it reads no such setting.
    read = (
        settings.model_fields.keys()
        - HANDED_DOWN
        - ({"dispatcher"} if command == ["worker"] else set())
    )

    assert [name for name in sorted(read) if f"HERALD_{name.upper()}" not in text] == []


def test_prune_help_shows_both_forms_of_an_age() -> None:
    result = CliRunner().invoke(app, ["prune", "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "400d" in result.output and "36h" in result.output


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["worker"],
        ["prune"],
        ["db", "upgrade"],
        ["messages", "retry"],
        ["messages", "failed"],
    ],
    ids=["herald", "serve", "worker", "prune", "db upgrade", "messages retry", "messages failed"],
)
def test_flags_show_no_value_placeholder(command: list[str]) -> None:
    """A flag followed by `<bool>` reads as taking a value: `--failed true` then fails."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output


@pytest.mark.parametrize(
    ("command", "sentence"),
    [
        (
            [],
            "Run a dispatcher alone, beside any number of herald serve --no-dispatcher API "
            "processes and other workers on the same database (one machine's SQLite file, or "
            "PostgreSQL).",
        ),
        (
            ["prune"],
            "Messages of rules limited once per user are redacted instead of deleted, so that "
            "their limit still holds after the history is gone.",
        ),
        (
            ["rules"],
            "Validate a rule file (conditions, channels, limits, templates, providers, delivery) "
            "and list its rules; exit 1 listing every problem.",
        ),
    ],
    ids=["herald", "prune", "rules"],
)
def test_help_texts_flow_to_the_terminals_width(command: list[str], sentence: str) -> None:
    # The source's line breaks used to show: "... on the same SQLite" then "file, or ...".
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})

    assert result.exit_code == 0, result.output
    assert sentence in result.output


def help_of(command: list[str]) -> str:
    """The command's --help, wide enough that no option's text is wrapped."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.output


def test_serve_help_names_every_setting() -> None:
    # It named the variables of its options and the tokens, and nothing said that the
    # metrics port, the log level or the outbox file of a `herald serve` come from
    # HERALD_METRICS_PORT, HERALD_LOG_LEVEL and HERALD_OUTBOX_FILE.
    output = help_of(["serve"])

    for name in Settings.model_fields.keys() - HANDED_DOWN:
        assert f"HERALD_{name.upper()}" in output, name


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        (["serve"], ["host", "port", "database_url", "workers"]),
        (["worker"], ["database_url", "metrics_host"]),
        (["db", "upgrade"], ["database_url"]),
    ],
    ids=["serve", "worker", "db upgrade"],
)
def test_help_shows_the_default_an_option_leaves_to(
    command: list[str], settings: list[str]
) -> None:
    # The options' own defaults are None, so that HERALD_* applies, and --help showed no
    # default at all: nothing said that serve listens on port 8000.
    output = help_of(command)

    for name in settings:
        assert f"default {Settings.model_fields[name].default}" in output, name


def test_serve_help_says_which_of_each_pair_of_flags_is_the_default() -> None:
    output = " ".join(help_of(["serve"]).split())

    assert Settings.model_fields["dispatcher"].default is True
    assert "deliver messages (the default) or not" in output
    assert Settings.model_fields["dispatcher_process"].default is True
    assert "from a child process, on another core (the default)" in output


def test_the_command_list_names_every_command_of_each_group() -> None:
    # `herald --help` listed "db: Database schema." and "messages: Outbound messages.":
    # nothing there said that `herald db upgrade` or `herald messages retry` exist.
    output = help_of([])
    groups: Any = typer.main.get_command(app)

    for group in ("rules", "db", "messages"):
        [line] = [line for line in output.splitlines() if line.startswith(f"│ {group} ")]
        for command in groups.commands[group].commands:
            assert command in line, (group, command)


def test_rules_try_help_names_every_exit_status() -> None:
    # It named 1 (an event rejected, a rule file with a problem) and not 2, which a
    # script checking a change to the rules gets for an events file it cannot read.
    result = CliRunner().invoke(app, ["rules", "try", "--help"], env={"COLUMNS": "400"})

    assert result.exit_code == 0, result.output
    assert "Exit 1 if an event is rejected" in result.output
    assert "2 if EVENTS cannot be read" in result.output


def test_herald_help_names_each_command_that_reads_the_stub_provider_s_file() -> None:
    # It named `rules check` alone, though `users forget` removes the user's sends from
    # the file HERALD_OUTBOX_FILE names.
    text = " ".join(help_of([]).split())
    said = text.split("HERALD_OUTBOX_FILE", 1)[0].rsplit("(", 1)[1]

    assert "rules check" in said and "users forget" in said
