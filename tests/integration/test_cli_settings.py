"""Each command reads, and so validates, only its own settings: a maintenance command or
a worker run from a shell or a cron job that shares the server's environment is not
stopped by a bad value of a setting only the server reads, and still refuses a bad one it
reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.loader import default_rules_path
from tests.support.processes import HeraldProcess, herald_environment

# Every setting only the API reads that has a value `herald serve` refuses, with such a
# value: neither a worker nor a maintenance command reads them.
API_SETTINGS_GONE_WRONG = {
    "HERALD_PORT": "eighty",
    "HERALD_WORKERS": "0",
    "HERALD_DISPATCHER": "maybe",
    "HERALD_DISPATCHER_PROCESS": "maybe",
    "HERALD_ADMIN_TOKEN": "",
    "HERALD_INGEST_TOKEN": "two words",
    "HERALD_OPENTELEMETRY": "maybe",
    "HERALD_SERVER_PID": "x",
    "HERALD_LOOPBACK_REQUESTS_ONLY": "maybe",
}
# The same for the settings of delivery, which a worker reads too.
DELIVERY_SETTINGS_GONE_WRONG = {
    "HERALD_METRICS_PORT": "0",
    "HERALD_LOG_LEVEL": "LOUD",
    "HERALD_LOG_FORMAT": "xml",
    "HERALD_SQLITE_FLUSH_EACH_COMMIT": "maybe",
    "HERALD_POSTGRES_STATEMENT_TIMEOUT": "-1",
    "HERALD_PUBLIC_URL": "herald.example.com",
    "HERALD_UNSUBSCRIBE_KEY": "short",
}
SERVER_SETTINGS_GONE_WRONG = API_SETTINGS_GONE_WRONG | DELIVERY_SETTINGS_GONE_WRONG
MAINTENANCE = {
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
    "messages failed": ["messages", "failed"],
    "messages retry": ["messages", "retry", "--failed"],
    "messages cancel": ["messages", "cancel", "--rule", "WELCOME_EMAIL"],
    "prune": ["prune", "--older-than", "400d", "--dry-run"],
    "rules check": ["rules", "check"],
    "users forget": ["users", "forget", "u_1", "--dry-run"],
}


def herald(args: list[str], **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "1000", **env})
    assert isinstance(result.exception, SystemExit | None), result.exception
    return result.exit_code, result.output


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'herald.db'}"
    code, output = herald(["db", "upgrade", "--database", url])
    assert code == 0, output
    return url


@pytest.mark.parametrize("command", list(MAINTENANCE))
def test_a_maintenance_command_runs_whatever_the_server_s_settings_hold(
    command: str, migrated: str
) -> None:
    code, output = herald(
        MAINTENANCE[command], HERALD_DATABASE_URL=migrated, **SERVER_SETTINGS_GONE_WRONG
    )

    # The database has no user and no message yet: forgetting one reaches it and finds
    # nobody, and cancelling a rule's messages finds none ever stored.
    assert code == (1 if command in ("users forget", "messages cancel") else 0), output
    assert "invalid settings" not in output


def test_the_server_still_refuses_those_settings_naming_each(migrated: str) -> None:
    code, output = herald(["serve"], HERALD_DATABASE_URL=migrated, **SERVER_SETTINGS_GONE_WRONG)

    assert code == 1, output
    assert refused_names(output) == SERVER_SETTINGS_GONE_WRONG.keys()


def refused_names(output: str) -> set[str]:
    """The settings an ``error: invalid settings: ...`` line names."""
    refused = output.partition("error: invalid settings: ")[2]
    return {part.split(":")[0] for part in refused.split("; ")}


@pytest.mark.parametrize(
    ("command", "variable", "value", "said"),
    [
        # Said as pydantic says it, "Input should be less than or equal to 31622400":
        # which the operator had to divide by 86,400 to learn it meant a year.
        (["serve"], "HERALD_CLOCK_SKEW", "99999999", "must be at most 366 days (31,622,400 s)"),
        (["serve"], "HERALD_CLOCK_SKEW", "-5", "must not be negative"),
        (
            ["worker"],
            "HERALD_POSTGRES_STATEMENT_TIMEOUT",
            "86401",
            "must be at most 1 day (86,400 s)",
        ),
        (["worker"], "HERALD_POSTGRES_STATEMENT_TIMEOUT", "-1", "must not be negative"),
    ],
)
def test_a_setting_in_seconds_out_of_its_bounds_is_refused_in_human_units(
    command: list[str], variable: str, value: str, said: str, migrated: str
) -> None:
    code, output = herald(command, HERALD_DATABASE_URL=migrated, **{variable: value})

    assert code == 1, output
    assert f"error: invalid settings: {variable}: {said} (got '{value}')" in output


def test_a_bound_of_a_setting_not_in_seconds_is_said_as_it_was(migrated: str) -> None:
    code, output = herald(["serve"], HERALD_DATABASE_URL=migrated, HERALD_WORKERS="65")

    assert code == 1, output
    assert (
        "error: invalid settings: HERALD_WORKERS: Input should be less than or equal to 64 "
        "(got '65')"
    ) in output


def test_a_worker_delivers_whatever_the_api_s_settings_hold(migrated: str, tmp_path: Path) -> None:
    env = herald_environment(
        HERALD_DATABASE_URL=migrated,
        HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"),
        **API_SETTINGS_GONE_WRONG,
    )
    with HeraldProcess("worker", log_dir=tmp_path) as worker:
        worker.start(["worker"], env, cwd=tmp_path)
        worker.wait_for_output("delivering ")
        output = worker.output()

    assert "invalid settings" not in output
    assert "warning" not in output  # the server's own settings, not misspelt ones


def test_a_worker_still_refuses_the_settings_it_reads_naming_each(migrated: str) -> None:
    code, output = herald(
        ["worker"], HERALD_DATABASE_URL=migrated, HERALD_RULES="", **SERVER_SETTINGS_GONE_WRONG
    )

    assert code == 1, output
    assert refused_names(output) == {"HERALD_RULES", *DELIVERY_SETTINGS_GONE_WRONG}


@pytest.mark.parametrize("command", ["prune", "rules check"])
def test_a_command_that_reads_the_rule_file_refuses_an_empty_herald_rules(
    command: str, migrated: str
) -> None:
    code, output = herald(MAINTENANCE[command], HERALD_DATABASE_URL=migrated, HERALD_RULES="")

    assert code == 1, output
    assert "error: invalid settings: HERALD_RULES: must name a rule file" in output


@pytest.mark.parametrize(
    "command", [*(name for name in MAINTENANCE if name != "rules check"), "worker"]
)
def test_a_command_that_opens_the_database_refuses_a_bad_herald_database_url(
    command: str,
) -> None:
    args = MAINTENANCE.get(command, [command])
    code, output = herald(args, HERALD_DATABASE_URL="mysql://localhost/herald")

    assert code == 1, output
    assert "error: unsupported database 'mysql': use sqlite or postgresql" in output


@pytest.mark.parametrize("command", [*MAINTENANCE, "worker", "serve"])
def test_an_empty_herald_database_url_is_named_not_read_as_a_url(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set from a variable the deployment never filled (HERALD_DATABASE_URL=$DB_URL), it
    was refused as "not a database URL: ''", naming neither the variable nor the way back
    to the default."""
    monkeypatch.chdir(tmp_path)
    args = MAINTENANCE.get(command, [command])

    code, output = herald(args, HERALD_DATABASE_URL="")

    assert code == 1, output
    assert (
        "error: invalid settings: HERALD_DATABASE_URL: must name a database (leave it "
        "unset for the default, sqlite:///./herald.db)"
    ) in output
    assert list(tmp_path.iterdir()) == []


def test_an_empty_database_option_is_named_as_given() -> None:
    code, output = herald(["db", "current", "--database", " "])

    assert code == 1, output
    assert "error: invalid settings: --database: must name a database" in output


@pytest.mark.parametrize(
    ("command", "host_given"),
    [
        (["worker", "--metrics-host", "0.0.0.0"], {}),
        (["serve", "--port", "0"], {"HERALD_METRICS_HOST": "0.0.0.0"}),
    ],
    ids=["worker option", "serve variable"],
)
def test_a_metrics_host_without_a_port_is_said_to_serve_nothing(
    migrated: str, tmp_path: Path, command: list[str], host_given: dict[str, str]
) -> None:
    """Metrics asked for on a host, but on no port, were served nowhere, in silence."""
    env = herald_environment(HERALD_DATABASE_URL=migrated, **host_given)
    with HeraldProcess(command[0], log_dir=tmp_path) as process:
        process.start(command, env, cwd=tmp_path)
        process.wait_for_output("delivering ")
        output = process.output()

    assert (
        "warning: the metrics host 0.0.0.0 is ignored without a metrics port: set "
        "HERALD_METRICS_PORT (a worker's --metrics-port) to serve the metrics"
    ) in output


SIGNUP = (
    '{"user_id": "u_1", "event_type": "signup_completed", '
    '"event_timestamp": "2025-10-31T19:24:11Z", "user_traits": {"marketing_opt_in": false}}'
)


def test_rules_try_decides_in_its_own_database_whatever_herald_database_url_holds(
    tmp_path: Path,
) -> None:
    """It reads no database setting: one the server's environment left empty stopped it."""
    events = tmp_path / "events.json"
    events.write_text(SIGNUP)

    code, output = herald(["rules", "try", str(events)], HERALD_DATABASE_URL="")

    assert code == 0, output
    assert "1 event: 0 messages would be sent, 0 rejected" in output


@pytest.mark.parametrize("command", ["rules check", "rules try"])
def test_a_rule_file_given_wins_over_an_empty_herald_rules(command: str, tmp_path: Path) -> None:
    """As an option given wins over its variable: the file named was refused for the
    variable it replaces."""
    events = tmp_path / "events.json"
    events.write_text(SIGNUP)
    rules = str(default_rules_path())
    args = ["rules", "check", rules] if command == "rules check" else ["rules", "try"]
    if command == "rules try":
        args += [str(events), "--rules", rules]

    code, output = herald(args, HERALD_RULES="")

    assert code == 0, output
    assert "invalid settings" not in output


@pytest.mark.parametrize("command", ["rules check", "users forget"])
def test_an_empty_herald_outbox_file_is_refused_rather_than_read_as_the_default(
    command: str, migrated: str, tmp_path: Path
) -> None:
    """Set from a variable the deployment never filled (HERALD_OUTBOX_FILE=$OUTBOX), it
    was taken as unset: the stub wrote the sends, personal data, to outbox.jsonl beside
    the database, a file the operator never named, and said nothing."""
    args = MAINTENANCE.get(command, [command])

    code, output = herald(args, HERALD_DATABASE_URL=migrated, HERALD_OUTBOX_FILE="")

    assert code == 1, output
    assert (
        "error: invalid settings: HERALD_OUTBOX_FILE: must name a file (unset the variable "
        "for the default: outbox.jsonl beside an SQLite database, else in the working folder)"
    ) in output
    assert not (tmp_path / "outbox.jsonl").exists()


KEY = "k" * 32


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(
    ("given", "missing", "value"),
    [
        ("HERALD_PUBLIC_URL", "HERALD_UNSUBSCRIBE_KEY", "https://herald.example.com"),
        ("HERALD_UNSUBSCRIBE_KEY", "HERALD_PUBLIC_URL", KEY),
    ],
)
def test_one_unsubscribe_link_setting_without_the_other_is_refused_at_start(
    command: str, given: str, missing: str, value: str, migrated: str
) -> None:
    code, output = herald([command], HERALD_DATABASE_URL=migrated, **{given: value})

    assert code == 1, output
    assert f"refusing to start: {given} is set without {missing}" in output
    assert KEY not in output


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("herald.example.com", "must be the absolute http(s) URL"),
        ("ftp://herald.example.com", "must be the absolute http(s) URL"),
        ("https://herald.example.com/?a=1", "must be a base URL without a query or fragment"),
        ("https://herald.example.com/#top", "must be a base URL without a query or fragment"),
        (f"https://{'a' * 200}.example", "String should have at most 200 characters"),
    ],
)
def test_a_public_url_that_is_no_base_url_is_refused(url: str, said: str, migrated: str) -> None:
    code, output = herald(
        ["worker"], HERALD_DATABASE_URL=migrated, HERALD_PUBLIC_URL=url, HERALD_UNSUBSCRIBE_KEY=KEY
    )

    assert code == 1, output
    assert f"HERALD_PUBLIC_URL: {said}" in output


def test_a_short_unsubscribe_key_is_refused_without_being_shown(migrated: str) -> None:
    code, output = herald(
        ["worker"],
        HERALD_DATABASE_URL=migrated,
        HERALD_PUBLIC_URL="https://herald.example.com",
        HERALD_UNSUBSCRIBE_KEY="s3cret-but-short",
    )

    assert code == 1, output
    assert "HERALD_UNSUBSCRIBE_KEY: must hold at least 32 characters" in output
    assert "s3cret-but-short" not in output
