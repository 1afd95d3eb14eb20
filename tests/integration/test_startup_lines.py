"""The lines `herald serve` and `herald worker` start with name the SQLite file and the
stub provider's file by their absolute paths, whatever the URL and the variable say: a
log read later, or from another folder, cannot tell which `./herald.db` it was."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, run_herald

RELATIVE_URL = "sqlite:///./herald.db"


def test_serve_and_its_dispatcher_name_the_files_they_opened_by_absolute_path(
    tmp_path: Path,
) -> None:
    folder = tmp_path.resolve()  # as the process finds its working folder
    env = herald_environment(HERALD_OUTBOX_FILE="outbox.jsonl")
    with HeraldProcess("serve", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--port", str(free_port()), "--database", RELATIVE_URL], env, cwd=tmp_path
        )
        server.wait_for_output("delivering ")  # the dispatcher process's second line
        output = server.output()

    database = f"sqlite:///{folder / 'herald.db'}"  # four slashes before an absolute path
    assert f", database {database}, " in output  # the server's line
    assert f" on {database}\n" in output  # the dispatcher's
    outbox = folder / "outbox.jsonl"
    assert f"delivering email: stub, {outbox}; sms: stub, {outbox}; " in output
    assert "./herald.db" not in output


def test_serve_with_the_dispatcher_inline_says_where_each_channel_delivers(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = herald_environment(HERALD_OUTBOX_FILE="outbox.jsonl")
    with HeraldProcess("serve", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--dispatcher-inline", "--port", str(port), "--database", RELATIVE_URL],
            env,
            cwd=tmp_path,
        )
        server.wait_healthy(f"http://127.0.0.1:{port}/readyz")
        output = server.output()

    outbox = tmp_path.resolve() / "outbox.jsonl"
    assert "delivery in the API" in output
    # The name its claims carry, as a worker says it.
    assert f" dispatcher {socket.gethostname()[:40]}:" in output
    assert f" on sqlite:///{tmp_path.resolve() / 'herald.db'}\n" in output
    assert f"\ndelivering email: stub, {outbox}; sms: stub, {outbox}; " in output


def test_a_worker_names_the_database_it_opened_by_absolute_path(tmp_path: Path) -> None:
    env = herald_environment()
    upgraded = run_herald(["db", "upgrade", "--database", RELATIVE_URL], env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    with HeraldProcess("worker", log_dir=tmp_path) as worker:
        worker.start(["worker", "--database", "sqlite:///herald.db"], env, cwd=tmp_path)
        worker.wait_for_output("delivering ")
        output = worker.output()

    folder = tmp_path.resolve()
    assert f" on sqlite:///{folder / 'herald.db'}\n" in output
    assert f"delivering email: stub, {folder / 'outbox.jsonl'}; " in output


def test_a_refusal_at_start_names_the_missing_folder_by_absolute_path(tmp_path: Path) -> None:
    database = run_herald(
        ["serve", "--port", str(free_port()), "--database", "sqlite:///no/such/herald.db"],
        env=herald_environment(),
        cwd=tmp_path,
    )
    outbox = run_herald(
        ["serve", "--port", str(free_port()), "--database", RELATIVE_URL],
        env=herald_environment(HERALD_OUTBOX_FILE="no/outbox.jsonl"),
        cwd=tmp_path,
    )

    folder = tmp_path.resolve()
    assert database.returncode == 1 and outbox.returncode == 1
    assert (
        f"error: the folder {folder / 'no' / 'such'} of the SQLite database does not exist"
        in database.stderr
    )
    assert (
        f"error: the stub provider cannot write {folder / 'no' / 'outbox.jsonl'}: its folder "
        "does not exist" in outbox.stderr
    )
