"""`herald serve` and `herald worker` refuse unsafe or broken settings before they start: a
database they would lose or cannot write, a log level or format they do not know, a stub
outbox they cannot write, a broken rule file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from herald.bootstrap import build_runtime
from herald.config import Settings
from tests.support.ports import free_port
from tests.support.processes import herald_environment, run_herald, without_file_powers
from tests.support.serving import one_line, sqlite_url


def test_serve_refuses_an_in_memory_sqlite_database(tmp_path: Path) -> None:
    result = run_herald(
        ["serve", "--port", str(free_port()), "--database", "sqlite:///:memory:"],
        env=herald_environment(),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert "in-memory SQLite database would lose every event" in one_line(result.stderr)


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]], ids=["serve", "worker"])
def test_an_unknown_log_level_is_refused_in_one_line_naming_the_levels(
    tmp_path: Path, command: list[str]
) -> None:
    result = run_herald(
        [*command, "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_LOG_LEVEL="verbose"),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    message = one_line(result.stderr)
    assert (
        "error: invalid settings: HERALD_LOG_LEVEL: must be DEBUG, INFO, WARNING, ERROR or "
        "CRITICAL (in any case) (got 'verbose')"
    ) in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "herald.db").exists()


def test_an_unknown_log_format_is_refused_naming_the_formats(tmp_path: Path) -> None:
    result = run_herald(
        ["serve", "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_LOG_FORMAT="xml"),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert (
        "error: invalid settings: HERALD_LOG_FORMAT: Input should be 'text' or 'json' (got 'xml')"
    ) in one_line(result.stderr)


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["serve", "--port", "0"], "HERALD_HOST"),
        (["serve", "--port", "0"], "HERALD_METRICS_HOST"),
        (["worker"], "HERALD_METRICS_HOST"),
    ],
    ids=["serve host", "serve metrics host", "worker metrics host"],
)
def test_an_empty_address_is_refused_naming_its_variable(
    tmp_path: Path, command: list[str], variable: str
) -> None:
    """Set from a variable the deployment never filled: an empty HERALD_HOST was "refusing
    to listen on : the audit exposes personal data", or, with tokens, "cannot serve the
    API on :8000"; an empty HERALD_METRICS_HOST went unsaid until the port was set."""
    result = run_herald(
        [*command, "--database", sqlite_url(tmp_path)],
        env=herald_environment(**{variable: " "}),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert one_line(result.stderr) == (
        f"error: invalid settings: {variable}: must name an address, such as 127.0.0.1 or "
        "0.0.0.0 (leave it unset for 127.0.0.1) (got ' ')"
    )


def test_serve_refuses_a_sqlite_file_in_a_missing_folder_and_creates_no_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "no" / "such"

    result = run_herald(
        ["serve", "--port", str(free_port()), "--database", f"sqlite:///{folder / 'h.db'}"],
        env=herald_environment(),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert f"the folder {folder} of the SQLite database does not exist" in one_line(result.stderr)
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_serve_refuses_a_database_it_cannot_write_instead_of_starting_ready(
    tmp_path: Path, read_only: str
) -> None:
    url = sqlite_url(tmp_path)
    run_herald(["db", "upgrade", "--database", url], env=herald_environment(), cwd=tmp_path)
    locked = tmp_path / "herald.db" if read_only == "file" else tmp_path
    locked.chmod(0o444 if read_only == "file" else 0o555)
    try:
        result = run_herald(
            ["serve", "--port", str(free_port()), "--database", url],
            env=herald_environment(),
            cwd=tmp_path,
            prefix=without_file_powers(),
        )
    finally:
        locked.chmod(0o644 if read_only == "file" else 0o755)

    assert result.returncode == 1, result.stderr
    assert one_line(result.stderr) == (
        "error: the database refuses writes: attempt to write a readonly database "
        f"({tmp_path / 'herald.db'} and its folder must be writable)"
    )


def test_serve_refuses_a_stub_outbox_file_in_a_missing_folder(tmp_path: Path) -> None:
    outbox = tmp_path / "no" / "outbox.jsonl"

    result = run_herald(
        ["serve", "--port", str(free_port()), "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_OUTBOX_FILE=str(outbox)),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert f"error: the stub provider cannot write {outbox}: its folder does not exist" in (
        one_line(result.stderr)
    )


def test_serve_refuses_a_stub_outbox_file_that_is_a_folder(tmp_path: Path) -> None:
    """Every email would otherwise be retried until it was a dead letter."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    result = run_herald(
        ["serve", "--port", str(free_port()), "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_OUTBOX_FILE=str(outbox)),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert (
        f"error: the stub provider cannot write {outbox}: it is a folder; name a file in it"
        in one_line(result.stderr)
    )


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]], ids=["serve", "worker"])
def test_a_stub_outbox_file_that_is_a_fifo_is_refused_at_start(
    tmp_path: Path, command: list[str]
) -> None:
    """Opened to write, a FIFO no one reads holds the process at start or at the first
    send, for good."""
    outbox = tmp_path / "outbox.jsonl"
    os.mkfifo(outbox)
    run_herald(
        ["db", "upgrade", "--database", sqlite_url(tmp_path)],
        env=herald_environment(),
        cwd=tmp_path,
    )

    result = run_herald(
        [*command, "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_OUTBOX_FILE=str(outbox)),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert (
        f"error: the stub provider cannot write {outbox}: it is a FIFO (a named pipe), not a "
        "regular file; name a file"
    ) in one_line(result.stderr)


@pytest.mark.parametrize(("flush", "level"), [(False, "NORMAL"), (True, "FULL")])
def test_sqlite_flushes_each_commit_to_disk_only_when_asked(
    tmp_path: Path, flush: bool, level: str
) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path), sqlite_flush_each_commit=flush)
    runtime = build_runtime(settings)
    with runtime.database.writer.connect() as connection:
        value = connection.exec_driver_sql("PRAGMA synchronous").scalar()
    runtime.database.dispose()

    assert value == {"NORMAL": 1, "FULL": 2}[level]


def test_a_worker_refuses_a_sqlite_file_that_does_not_exist_and_creates_nothing(
    tmp_path: Path,
) -> None:
    result = run_herald(
        ["worker", "--database", sqlite_url(tmp_path)],
        env=herald_environment(),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert f"no SQLite database at {tmp_path / 'herald.db'}" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_a_broken_rule_file_naming_the_file_and_the_problem(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "events:\n"
        "  signup_completed: {}\n"
        "rules:\n"
        "  - id: WELCOME\n"
        "    trigger: signup_exploded\n"
        "    channel: email\n"
        "    category: transactional\n"
        "    limit: once_per_user\n"
        "    template: welcome\n",
        encoding="utf-8",
    )

    result = run_herald(
        [
            "serve",
            "--port",
            str(free_port()),
            "--database",
            sqlite_url(tmp_path),
            "--rules",
            str(rules),
        ],
        env=herald_environment(),
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    message = one_line(result.stderr)
    assert str(rules) in message
    assert "signup_exploded" in message and "not a declared event type" in message


@pytest.mark.parametrize(
    ("delivery", "said"),
    [
        ("--dispatcher-inline", "on the API's event loop"),
        # The default given as well: the child process asked for was dropped alike.
        ("--dispatcher-process", "from a child process"),
    ],
)
def test_serve_refuses_no_dispatcher_beside_a_way_to_deliver(
    delivery: str, said: str, tmp_path: Path
) -> None:
    """Given both, the server started with delivery off, the way of delivering asked for
    dropped without a word but the opening line's "delivery off"."""
    args = ["serve", "--port", "0", "--database", sqlite_url(tmp_path), "--no-dispatcher", delivery]
    try:
        result = run_herald(
            args,
            env=herald_environment(),
            cwd=tmp_path,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"herald serve started with both --no-dispatcher and {delivery}")

    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr) == (
        f"error: --no-dispatcher delivers nothing and {delivery} delivers {said}: give one of them"
    )
