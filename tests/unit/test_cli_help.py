"""Each option that an environment variable can also set names that variable in --help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from herald.cli.main import app


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (
            ["serve"],
            ["HERALD_HOST", "HERALD_PORT", "HERALD_DATABASE_URL", "HERALD_RULES", "HERALD_WORKERS"],
        ),
        (["worker"], ["HERALD_DATABASE_URL", "HERALD_METRICS_PORT", "HERALD_METRICS_HOST"]),
    ],
    ids=["serve", "worker"],
)
def test_help_names_the_environment_variables(command: list[str], variables: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    for variable in variables:
        assert variable in result.output
