"""The README's account of the command line and the settings matches the code: each
command's options, every HERALD_* variable and the defaults it states, the shipped rules,
and the files and sections the documents link to."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer.main
import yaml
from typer.testing import CliRunner

from herald.cli.main import app
from herald.config import HANDED_DOWN, Settings

REPOSITORY = Path(__file__).resolve().parents[2]
README = REPOSITORY / "README.md"
DOCUMENTS = [README, REPOSITORY / "bench" / "README.md"]
# Read by the test suite, not by Herald.
TEST_VARIABLES = {"HERALD_TEST_POSTGRES_URL"}


def readme() -> str:
    return README.read_text(encoding="utf-8")


def section(title: str) -> str:
    return readme().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def flat(text: str) -> str:
    """``text`` with its line breaks and runs of spaces as one space."""
    return " ".join(text.split())


def command_rows() -> dict[tuple[str, ...], str]:
    """Each row of the "Command line" table, by the command it is about (the words after
    ``herald`` in its first cell)."""
    rows: dict[tuple[str, ...], str] = {}
    for line in section("Command line").splitlines():
        if not line.startswith("| `herald "):
            continue
        first_cell = re.split(r"(?<!\\)\|", line)[1]
        words = re.match(r"\s*`herald ((?:[a-z]+ ?)+)", first_cell)
        assert words, line
        rows[tuple(words[1].split())] = line
    return rows


def options_of(path: tuple[str, ...]) -> list[Any]:
    """The options a user can give ``herald <path>`` (its hidden ones left out)."""
    found: Any = typer.main.get_command(app)
    for name in path:
        found = found.commands[name]
    return [p for p in found.params if p.param_type_name == "option" and not p.hidden]


def test_every_option_the_command_table_names_exists_and_every_option_is_named() -> None:
    rows = command_rows()
    assert set(rows) == {
        ("serve",),
        ("worker",),
        ("rules", "check"),
        ("rules", "try"),
        ("db", "upgrade"),
        ("db", "current"),
        ("db", "backup"),
        ("messages", "failed"),
        ("messages", "retry"),
        ("messages", "cancel"),
        ("prune",),
        ("users", "audit"),
        ("users", "forget"),
    }
    for path, row in rows.items():
        options = options_of(path)
        known = {name for p in options for name in (*p.opts, *p.secondary_opts)} - {"--help"}
        named = set(re.findall(r"--[a-z][a-z-]*", row))

        assert named - known == set(), path
        for option in options:
            if "--help" not in option.opts:
                assert {*option.opts, *option.secondary_opts} & named, (path, option.opts)


def commands_of(group: Any, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every command a user can run under ``group``, by the words after ``herald``."""
    found: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():
        if command.hidden:
            continue
        if hasattr(command, "commands"):
            found |= commands_of(command, (*path, name))
        else:
            found.add((*path, name))
    return found


def test_every_command_of_the_cli_has_a_row_in_the_command_table() -> None:
    # The test above lists the rows it expects: a command added to the CLI and not to
    # the README would have passed it.
    assert commands_of(typer.main.get_command(app)) == set(command_rows())


def test_each_placeholder_the_command_table_shows_is_the_one_help_shows() -> None:
    # The README wrote `--database URL` and `--limit N`, --help `--database <str>` and
    # `--limit <int range>`.
    shown = {
        (path, name): placeholder
        for path, row in command_rows().items()
        for name, placeholder in re.findall(r"(--[a-z][a-z-]*) ([A-Z]+)\b", row)
    }
    assert shown[("serve",), "--database"] == "URL"
    for (path, name), placeholder in shown.items():
        [option] = [option for option in options_of(path) if name in option.opts]
        assert option.metavar == placeholder, (path, name)


def test_every_setting_is_named_as_its_variable_and_every_variable_named_is_a_setting() -> None:
    settings = {f"HERALD_{name.upper()}" for name in Settings.model_fields.keys() - HANDED_DOWN}
    text = readme()
    named = {v for doc in DOCUMENTS for v in re.findall(r"HERALD_[A-Z_]+", doc.read_text())}

    assert {variable for variable in settings if f"`{variable}`" not in text} == set()
    assert named - settings - TEST_VARIABLES == set()


def settings_table() -> dict[str, list[str]]:
    """The README's table of settings: each row's cells after the first (option, default,
    read by, what it sets), by the variable the row is about."""
    rows = {}
    for line in section("Command line").splitlines():
        found = re.match(r"\| `(HERALD_[A-Z_]+)` \|(.*)\|$", line)
        if found:
            rows[found[1]] = [cell.strip() for cell in found[2].split(" | ")]
    return rows


def test_every_setting_has_a_row_in_the_settings_table_and_no_other() -> None:
    table = settings_table()
    settings = {f"HERALD_{name.upper()}" for name in Settings.model_fields.keys() - HANDED_DOWN}

    assert set(table) == settings


def test_the_defaults_the_settings_table_states_are_the_settings_defaults() -> None:
    table = settings_table()
    for name, field in Settings.model_fields.items():
        if name in HANDED_DOWN:
            continue
        said = table[f"HERALD_{name.upper()}"][1]
        default = field.default
        if default is None:
            # Unset: no value, or the one the code works out (the packaged rule file,
            # the stub's file beside the database).
            assert not said.startswith("`") or name == "outbox_file", (name, said)
        elif isinstance(default, bool):
            assert said == f"`{str(default).lower()}`", name
        elif isinstance(default, int | float):
            assert float(said.strip("`")) == default, name
        else:
            assert said == f"`{default}`", name
    # `make run` serves with herald serve's own defaults.
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    where = f"http://{defaults['host']}:{defaults['port']}"
    text = flat(readme())
    assert f"{where} with SQLite at {defaults['database_url'].removeprefix('sqlite:///')}" in text


def test_the_settings_table_gives_each_whole_number_setting_s_range() -> None:
    table = settings_table()
    for name, field in Settings.model_fields.items():
        bounds = {type(rule).__name__: rule for rule in field.metadata}
        if "Ge" not in bounds or "Le" not in bounds or name in HANDED_DOWN:
            continue
        if field.annotation not in (int, int | None):
            continue  # a number of seconds: "at most", as its bound is in other words
        low, high = bounds["Ge"].ge, bounds["Le"].le
        said = table[f"HERALD_{name.upper()}"][3]
        # A port as ports are written (65535), a count with its thousands (1,000,000).
        assert f"{low:,} to {high:,}" in said or f"{low} to {high}" in said, (name, said)


def test_each_option_the_settings_table_names_is_one_of_its_command() -> None:
    for variable, (option, *_) in settings_table().items():
        if not option:
            continue  # a setting of the environment alone
        *command, name = option.strip("`").split()
        commands = [tuple(command)] if command else list(command_rows())
        assert any(
            name in {*p.opts, *p.secondary_opts} for path in commands for p in options_of(path)
        ), variable


_LIMITS = {
    "once per user": "once_per_user",
    "once per user per UTC day": "once_per_user_per_day",
    "once per user per UTC day of the event": "once_per_user_per_day",
    "once per event": "once_per_event",
}


def test_the_table_of_shipped_rules_is_the_default_rule_file() -> None:
    shipped = yaml.safe_load((REPOSITORY / "src/herald/rules/default.yaml").read_text())
    table = re.findall(
        r"^\| `(\w+)` \((\w+)\) \| `(\w+)` \| [^|]* \| (\w+)[^|]* \| ([^|]+?) \|$",
        section("Rules"),
        re.M,
    )

    described = {
        rule: (category, trigger, channel, _LIMITS[limit])
        for rule, category, trigger, channel, limit in table
    }
    assert described == {
        rule["id"]: (
            rule.get("category", "internal"),
            rule["trigger"],
            rule["channel"].replace("internal", "log"),  # an internal alert is a log line
            rule.get("limit", "once_per_event"),
        )
        for rule in shipped["rules"]
    }


def test_every_link_leads_to_a_file_or_a_section_that_exists() -> None:
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        anchors = {
            re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, re.M)
        }
        for target in re.findall(r"\]\(([^)]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            if target.startswith("#"):
                assert target[1:] in anchors, (document.name, target)
            else:
                assert (document.parent / target).exists(), (document.name, target)


def test_the_benchmark_s_how_to_run_commands_and_options_are_the_harness_s() -> None:
    text = (REPOSITORY / "bench" / "README.md").read_text(encoding="utf-8")
    how_to_run = text.split("\n## How to run\n", 1)[1].split("\n## ", 1)[0]
    [commands] = re.findall(r"```sh\n(.*?)```", how_to_run, re.DOTALL)
    invocations = []
    for line in commands.splitlines():
        line = line.split("#", 1)[0]
        given = re.search(r'BENCH_ARGS="([^"]*)"', line) or re.search(r"bench/run\.py(.*)", line)
        invocations.append(shlex.split(given[1]) if given else [])

    assert len(invocations) == 6
    # The harness's modules import each other by their bare names: read in a process of
    # their own, where an unknown option or a bad value exits non-zero, and --help exits 0.
    parsed = subprocess.run(
        [sys.executable, "-c", _PARSE_EACH, json.dumps(invocations)],
        cwd=REPOSITORY / "bench",
        capture_output=True,
        text=True,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stderr
    options = set(re.findall(r"--[a-z][a-z-]*", parsed.stdout))
    assert set(re.findall(r"--[a-z][a-z-]*", how_to_run)) - options == set()
    # And every option of the harness is described there: --warmup, --connections,
    # --threads, --batch-clients, --batch-size, --batch-duration and --startup-timeout
    # were not.
    assert options - set(re.findall(r"--[a-z][a-z-]*", how_to_run)) == {"--help"}


# Parses each argv of argv[1] (JSON) as `bench/run.py` would, then prints its --help.
_PARSE_EACH = """
import json, sys
from options import parse_args
for argv in json.loads(sys.argv[1]):
    parse_args(argv)
parse_args(["--help"])
"""


def test_the_rule_file_argument_is_spelt_as_the_readme_spells_it() -> None:
    # The usage line said `herald rules check [OPTIONS] [path]`, the README `[PATH]`.
    [argument] = re.findall(r"`herald rules check (\[\w+\])`", section("Command line"))
    result = CliRunner().invoke(
        app, ["rules", "check", "--help"], prog_name="herald", env={"COLUMNS": "200"}
    )

    assert f"herald rules check [OPTIONS] {argument}" in result.output


def test_every_make_target_is_in_the_readme() -> None:
    makefile = (REPOSITORY / "Makefile").read_text(encoding="utf-8")
    [phony] = re.findall(r"^\.PHONY: (.+)$", makefile, re.M)
    named = set(re.findall(r"`make (\w+)", readme())) | set(
        re.findall(r"^make (\w+)", readme(), re.M)
    )

    assert set(phony.split()) - named == set()
