"""The lines a command says to the operator (where it serves, that it is stopping) are
the same whatever the log format: JSON changes how they are written, not whether."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from herald.cli.options import warn_of_unknown_variables
from herald.config import Settings
from herald.observability.logging import configure_logging
from herald.observability.operator_lines import say


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_operator_line_is_written_at_any_log_level(
    fmt: str, root_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(log_format=fmt, log_level="WARNING")
    configure_logging(settings.log_level, settings.log_format)

    say(settings, "stopping: the sends under way finish and are recorded first")

    [line] = capsys.readouterr().err.splitlines()
    said = json.loads(line)["message"] if fmt == "json" else line
    assert said == "stopping: the sends under way finish and are recorded first"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_line_asking_the_operator_to_act_is_a_warning(
    fmt: str, root_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Messages of rules taken out of the rule file go out unless cancelled: alerting on
    # WARNING must see the line that says so.
    settings = Settings(log_format=fmt, log_level="ERROR")
    configure_logging(settings.log_level, settings.log_format)

    say(settings, "messages waiting to be sent belong to rules ...", level=logging.WARNING)

    [line] = capsys.readouterr().err.splitlines()
    if fmt == "json":
        assert json.loads(line)["level"] == "WARNING"
    else:
        assert line == "warning: messages waiting to be sent belong to rules ..."


def test_a_misspelt_setting_is_named_with_the_one_meant(
    root_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # HERALD_DATABASE was ignored in silence: the server ran on ./herald.db while its
    # operator thought it on PostgreSQL.
    settings = Settings(log_format="text")
    configure_logging(settings.log_level, settings.log_format)
    environ = {
        "HERALD_DATABASE": "postgresql://herald@db/herald",
        "HERALD_PORT": "8001",
        "HERALD_ZZZ": "1",
        "PATH": "/usr/bin",
    }

    warn_of_unknown_variables(settings, environ)

    assert capsys.readouterr().err.splitlines() == [
        "warning: HERALD_DATABASE is not a Herald setting, and is ignored; did you mean "
        "HERALD_DATABASE_URL?",
        "warning: HERALD_ZZZ is not a Herald setting, and is ignored",
    ]
