"""Every command that opens a database says in one line what is wrong with it: a bad URL,
a server that does not answer, a schema behind this version. Never a traceback. A process
that would serve refuses a broken rule file first, listing every problem in it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from herald.cli.main import app
from tests.support.ports import free_port
from tests.support.processes import herald_environment, run_herald, without_file_powers
from tests.support.rule_files import (
    EVERY_PROBLEM,
    beginnings,
    listed_problems,
    write_broken_rule_file,
)

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/herald"  # nothing listens on port 1
COMMANDS = {
    "db upgrade": ["db", "upgrade"],
    "messages retry": ["messages", "retry", "--failed"],
    "messages failed": ["messages", "failed"],
    "prune": ["prune", "--older-than", "400d"],
}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/herald", "unsupported database 'mysql'"),
        ("sqlite:///:memory:", "an in-memory SQLite database would lose every event"),
        (UNREACHABLE, "cannot reach the database: OperationalError"),
        (
            "postgresql://postgres@127.0.0.1/herald?port=x",
            "not a database URL: 'postgresql://postgres@127.0.0.1/herald?port=x' "
            "(Received non-integer port arguments: ('x',))",
        ),
        (
            "sqlite://./herald.db",  # two slashes: the path's start read as a host
            "not an SQLite URL: 'sqlite://./herald.db': SQLite has no host, so its URL has "
            "three slashes before a relative path (sqlite:///./herald.db)",
        ),
        (
            "herald.db",  # a file's path as it is, not a URL
            "not a database URL: 'herald.db': name an SQLite file as sqlite:///herald.db",
        ),
        (
            # SQLAlchemy's reading of the value failed with a traceback; `mode=ro` was
            # ignored, with a warning, and the file opened for writing all the same.
            "sqlite:///herald.db?timeout=abc&mode=ro",
            "an SQLite URL takes no parameters (mode, timeout): Herald sets the connection's "
            "own; name the file alone, e.g. sqlite:///./herald.db",
        ),
    ],
    ids=[
        "unsupported",
        "in-memory",
        "unreachable",
        "port parameter",
        "sqlite with a host",
        "a bare path",
        "sqlite parameters",
    ],
)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_database_that_cannot_serve_is_one_clear_line(
    command: str, url: str, message: str
) -> None:
    result = CliRunner().invoke(
        app, [*COMMANDS[command], "--database", url], env={"COLUMNS": "1000"}
    )

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert f"error: {message}" in result.output


def test_a_server_that_never_answers_is_given_up_on_with_one_clear_line(tmp_path: Path) -> None:
    """A host or port where something accepts connections but never speaks PostgreSQL
    (a hung server, the wrong service): libpq alone would wait for ever, in silence."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody ever answers
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/herald"
        started = time.monotonic()
        result = run_herald(
            ["worker", "--database", url], env=herald_environment(), cwd=tmp_path, timeout=60
        )
        took = time.monotonic() - started

    assert result.returncode == 1, result.stderr
    assert "error: cannot reach the database: OperationalError: connection timeout" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert took < 30


@pytest.mark.parametrize("command", ["messages retry", "prune"])
def test_a_command_that_changes_rows_refuses_a_schema_it_does_not_know(
    command: str, tmp_path: Path
) -> None:
    path = tmp_path / "never-upgraded.db"
    path.touch()  # an empty file is an empty SQLite database
    url = f"sqlite:///{path}"

    result = CliRunner().invoke(app, [*COMMANDS[command], "--database", url])

    assert result.exit_code == 1, result.output
    assert "run `herald db upgrade --database URL` first" in result.output


@pytest.mark.parametrize("command", [*COMMANDS, "serve", "worker"])
def test_a_file_that_is_not_an_sqlite_database_is_named_and_said_to_be_so(
    command: str, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("name,email\nmaria,maria@example.com\n" * 40, encoding="utf-8")
    args = [*COMMANDS.get(command, [command]), "--database", f"sqlite:///{path}"]
    if command == "serve":
        args += ["--port", str(free_port())]

    result = run_herald(args, env=herald_environment(), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {path} is not an SQLite database: name Herald's database with --database "
        "or HERALD_DATABASE_URL"
    ]
    assert path.read_text(encoding="utf-8").startswith("name,email\n")  # left as it was


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_a_broken_rule_file_listing_every_problem(
    command: str, tmp_path: Path
) -> None:
    rules = write_broken_rule_file(tmp_path)
    args = [command, "--rules", str(rules), "--database", f"sqlite:///{tmp_path / 'herald.db'}"]
    if command == "serve":
        args += ["--port", str(free_port())]

    result = run_herald(args, env=herald_environment(), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert f"error: {rules}: {len(EVERY_PROBLEM)} problem(s)" in result.stderr
    assert beginnings(listed_problems(result.stderr)) == EVERY_PROBLEM
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "herald.db").exists()  # refused before the database was touched


def test_prune_refuses_a_broken_rule_file_listing_each_problem_of_its_rules(
    tmp_path: Path,
) -> None:
    # Prune reads the rules alone: the providers and delivery settings are not its own.
    rules = write_broken_rule_file(tmp_path)
    database = f"sqlite:///{tmp_path / 'herald.db'}"

    result = CliRunner().invoke(
        app,
        ["prune", "--older-than", "400d", "--rules", str(rules), "--database", database],
        env={"COLUMNS": "1000"},
    )

    assert result.exit_code == 1, result.output
    assert f"error: {rules}: 4 problem(s)" in result.output
    assert beginnings(listed_problems(result.output))[:4] == EVERY_PROBLEM[:4]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:S3CRETPW@127.0.0.1:1/herald",  # unreachable
        "postgresql://postgres:S3CRETPW@127.0.0.1:port/herald",  # not a URL
        "postgres ql://postgres:S3CRETPW@127.0.0.1/herald",  # not a URL either
        # An "@" left unencoded: read as the end of the password, and the rest as the host.
        "postgresql://postgres:x@S3CRETPW@127.0.0.1:1/herald",
        "postgresql://postgres@127.0.0.1:port/herald?password=S3CRETPW",  # libpq's parameter
    ],
    ids=["unreachable", "bad port", "bad scheme", "unencoded at sign", "password parameter"],
)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_error_about_the_database_never_shows_its_password(command: str, url: str) -> None:
    result = CliRunner().invoke(
        app, [*COMMANDS[command], "--database", url], env={"COLUMNS": "1000"}
    )

    assert result.exit_code == 1, result.output
    assert "error: " in result.output
    assert "S3CRETPW" not in result.output


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_password_with_an_unencoded_at_sign_is_named_as_the_mistake(command: str) -> None:
    """libpq was asked for the host "S3CRETPW@127.0.0.1" and said it could not resolve it."""
    url = "postgresql://postgres:x@S3CRETPW@127.0.0.1:1/herald"

    result = CliRunner().invoke(
        app, [*COMMANDS[command], "--database", url], env={"COLUMNS": "1000"}
    )

    assert result.exit_code == 1, result.output
    assert "error: the database URL 'postgresql://postgres:***@127.0.0.1:1/herald'" in (
        result.output
    )
    assert "%40" in result.output


@pytest.mark.parametrize("command", ["messages retry", "prune"])
def test_a_command_run_away_from_its_database_says_so_and_creates_nothing(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default database, ./herald.db, is not here
    monkeypatch.delenv("HERALD_DATABASE_URL", raising=False)

    result = CliRunner().invoke(app, COMMANDS[command], env={"COLUMNS": "1000"})

    assert result.exit_code == 1, result.output
    assert f"error: no SQLite database at {tmp_path / 'herald.db'}" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_sqlite_file_in_a_missing_folder_is_refused_and_the_folder_is_not_created(
    command: str, tmp_path: Path
) -> None:
    folder = tmp_path / "no" / "such"
    url = f"sqlite:///{folder / 'herald.db'}"

    result = CliRunner().invoke(
        app, [*COMMANDS[command], "--database", url], env={"COLUMNS": "1000"}
    )

    assert result.exit_code == 1, result.output
    assert f"error: the folder {folder} of the SQLite database does not exist" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_database_this_user_may_not_open_is_named_with_the_reason_and_what_to_do(
    tmp_path: Path,
) -> None:
    """Run as another user than the database's owner (a cron job, a shell as oneself),
    SQLite says only "unable to open database file", naming neither file nor cause."""
    private = tmp_path / "private"
    private.mkdir()
    database = private / "herald.db"
    runner = CliRunner()
    assert (
        runner.invoke(app, ["db", "upgrade", "--database", f"sqlite:///{database}"]).exit_code == 0
    )
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    env = herald_environment()

    database.chmod(0o000)
    unreadable = run_herald(
        ["messages", "failed", "--database", f"sqlite:///{database}"],
        env=env,
        cwd=tmp_path,
        prefix=without_file_powers(),
    )
    uncreatable = run_herald(
        ["db", "upgrade", "--database", f"sqlite:///{locked / 'herald.db'}"],
        env=env,
        cwd=tmp_path,
        prefix=without_file_powers(),
    )
    a_folder = runner.invoke(
        app, ["worker", "--database", f"sqlite:///{private}"], env={"COLUMNS": "1000"}
    )

    assert (unreadable.returncode, uncreatable.returncode, a_folder.exit_code) == (1, 1, 1)
    assert unreadable.stderr.splitlines() == [
        f"error: cannot open the SQLite database {database}: this user may not read it: run "
        "as the user who owns it, or give this one access"
    ]
    assert uncreatable.stderr.splitlines() == [
        f"error: cannot open the SQLite database {locked / 'herald.db'}: this user may not "
        f"create files in its folder {locked}: run as the user who owns that folder, or let "
        "this one write to it"
    ]
    assert a_folder.output.splitlines() == [
        f"error: cannot open the SQLite database {private}: it is a folder; name a file in it"
    ]


@pytest.mark.parametrize(
    "command",
    [["db", "current"], ["users", "audit", "u_1"], ["messages", "failed"], ["db", "backup"]],
    ids=["db current", "users audit", "messages failed", "db backup"],
)
def test_a_command_that_only_reads_says_why_sqlite_needs_to_write_beside_the_file(
    command: list[str], tmp_path: Path
) -> None:
    """Run by a user who may read the database but not write to its folder, a command
    that only reads was told "the database refuses writes": SQLite reads a database in
    WAL mode with its -wal and -shm files, which it could not create there."""
    folder = tmp_path / "herald"
    folder.mkdir()
    database = folder / "herald.db"
    url = f"sqlite:///{database}"
    assert CliRunner().invoke(app, ["db", "upgrade", "--database", url]).exit_code == 0
    if command == ["db", "backup"]:
        command = [*command, str(tmp_path / "backup.db")]
    database.chmod(0o444)
    folder.chmod(0o555)
    try:
        result = run_herald(
            [*command, "--database", url],
            env=herald_environment(),
            cwd=tmp_path,
            prefix=without_file_powers(),
        )
    finally:
        folder.chmod(0o755)

    assert result.returncode == 1, result.stdout
    assert result.stderr.splitlines() == [
        f"error: SQLite cannot read {database} without its -wal and -shm files, which this "
        f"user may not create in {folder}: run as the user who owns the database, or let "
        "this one write to its folder"
    ]


@pytest.mark.parametrize("command", [["worker"], COMMANDS["prune"]], ids=["worker", "prune"])
def test_an_empty_rules_variable_is_named_not_read_as_the_current_folder(
    command: list[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'herald.db'}"

    result = CliRunner().invoke(
        app, [*command, "--database", url], env={"HERALD_RULES": "", "COLUMNS": "1000"}
    )

    assert result.exit_code == 1, result.output
    assert "error: invalid settings: HERALD_RULES: must name a rule file" in result.output


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["serve", "--port", "70000"], "--port: Input should be less than or equal to 65535"),
        (["worker", "--metrics-port", "0"], "--metrics-port: Input should be greater than"),
        (["prune", "--older-than", "400d", "--rules", ""], "--rules: must name a rule file"),
    ],
    ids=["serve", "worker", "prune"],
)
def test_a_wrong_option_is_named_as_given_not_as_its_variable(
    command: list[str], said: str
) -> None:
    """It was named HERALD_PORT, a variable the operator had not set, and may look for."""
    result = CliRunner().invoke(app, command, env={"COLUMNS": "1000"})

    assert result.exit_code == 1, result.output
    assert f"error: invalid settings: {said}" in result.output
    assert "HERALD_" not in result.output


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("role", "said"),
    [
        (
            "herald_no_such_role",
            'error: the PostgreSQL server refused the connection: role "herald_no_such_role" '
            "does not exist: check the user and password in the URL",
        ),
        (
            # A role the server has, with no right on Herald's tables (set as the session
            # starts: the URL's user stays one that may log in).
            "pg_monitor",
            "error: the database refused the role access: permission denied for table "
            "alembic_version: connect as the role Herald's tables belong to, or grant this "
            "one access to them",
        ),
    ],
    ids=["unknown role", "no rights"],
)
@pytest.mark.parametrize("command", ["db current", "prune", "worker"])
def test_a_server_that_answers_but_refuses_the_role_is_not_said_to_be_out_of_reach(
    command: str, role: str, said: str, postgres_url: str
) -> None:
    """An operator told "cannot reach the database" goes looking for a network problem,
    where the server answered and refused the login or the role's access."""
    url = make_url(postgres_url)
    if role == "pg_monitor":
        url = url.update_query_dict({"options": f"-c role={role}"})
    else:
        url = url.set(username=role)
    args = {"db current": ["db", "current"], "worker": ["worker"]}.get(command) or COMMANDS[command]

    result = CliRunner().invoke(
        app,
        [*args, "--database", url.render_as_string(hide_password=False)],
        env={"COLUMNS": "1000"},
    )

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.splitlines() == [said]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("parameters", "said"),
    [
        ({"sslmode": "sometimes"}, 'invalid sslmode value: "sometimes"'),
        (
            {"keepalives_idle": "x"},
            'invalid integer value "x" for connection option "keepalives_idle"',
        ),
        ({"sslmod": "require"}, 'invalid connection option "sslmod"'),
        (
            {"options": "-c statement_timeout=soon"},
            'invalid value for parameter "statement_timeout": "soon"',
        ),
    ],
    ids=["bad value", "bad number", "unknown parameter", "bad server setting"],
)
def test_a_bad_parameter_of_a_postgresql_url_is_named_as_the_url_s_not_as_out_of_reach(
    parameters: dict[str, str], said: str, postgres_url: str
) -> None:
    url = make_url(postgres_url).update_query_dict(parameters)

    result = CliRunner().invoke(
        app,
        ["db", "current", "--database", url.render_as_string(hide_password=False)],
        env={"COLUMNS": "1000"},
    )

    assert result.exit_code == 1, result.output
    [line] = result.output.splitlines()
    assert line.startswith("error: a parameter of the database URL is wrong: ")
    assert line.endswith(f"{said}: correct it in the URL")


@pytest.mark.postgres
def test_dead_letters_are_listed_from_a_read_only_database_others_refuse_it(
    emptied_postgres_url: str,
) -> None:
    """A replica, say: listing reads, and needs no write; retry and prune write."""
    read_only = (
        make_url(emptied_postgres_url)
        .update_query_dict({"options": "-c default_transaction_read_only=on"})
        .render_as_string(hide_password=False)
    )
    runner = CliRunner()

    listed = runner.invoke(app, ["messages", "failed", "--database", read_only])
    retried = runner.invoke(app, ["messages", "retry", "--failed", "--database", read_only])

    assert listed.exit_code == 0, listed.output
    assert "0 dead letter(s)" in listed.output
    assert retried.exit_code == 1
    assert "error: the database refuses writes" in retried.output


@pytest.mark.postgres
def test_a_read_only_postgres_server_is_refused_saying_where_writes_go(
    emptied_postgres_url: str,
) -> None:
    """PostgreSQL's own words, "cannot execute UPDATE in a read-only transaction", named
    neither the likely cause (a standby a failover left the URL on, a server set
    read-only) nor what to do."""
    read_only = (
        make_url(emptied_postgres_url)
        .update_query_dict({"options": "-c default_transaction_read_only=on"})
        .render_as_string(hide_password=False)
    )

    retried = CliRunner().invoke(app, ["messages", "retry", "--failed", "--database", read_only])

    assert retried.exit_code == 1
    assert retried.output.strip().endswith(
        "read-only transaction (a standby, or a server, database or role set "
        "default_transaction_read_only): name the primary in the URL, or make it take writes"
    ), retried.output


@pytest.mark.postgres
def test_a_postgres_url_as_hosts_hand_them_out_is_postgresql(emptied_postgres_url: str) -> None:
    """Many hosts give PostgreSQL's URL as ``postgres://``, SQLAlchemy's name for none."""
    as_hosts_give_it = make_url(emptied_postgres_url).set(drivername="postgres")
    url = as_hosts_give_it.render_as_string(hide_password=False)
    assert url.startswith("postgres://")

    listed = CliRunner().invoke(app, ["messages", "failed", "--database", url])

    assert listed.exit_code == 0, listed.output
    assert "0 dead letter(s)" in listed.output
