"""`herald serve` as an operator runs it: it refuses unsafe or broken settings before it
binds, tags every response with a request id, and keeps personal data out of its logs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from herald.api.app import create_app
from herald.bootstrap import build_runtime
from herald.config import Settings
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.ports import free_port
from tests.support.processes import (
    HeraldProcess,
    herald_environment,
    run_herald,
    wait_for,
    without_file_powers,
)

DISTINCTIVE_EMAIL = "zebulon.quartermaine@example.org"
POISONED_EMAIL = "yolanda.poisonwood@example.org"


def signup(user: str, email: str) -> dict[str, Any]:
    return {
        "event_id": f"evt_{user}_signup",
        "user_id": user,
        "event_type": "signup_completed",
        "event_timestamp": "2025-11-03T10:00:00Z",
        "user_traits": {"email": email, "marketing_opt_in": True},
    }


def one_line(text: str) -> str:
    """The CLI's message with any wrapping undone."""
    return " ".join(text.split())


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'herald.db'}"


# --- refusing to start --------------------------------------------------------------


@pytest.mark.parametrize(
    "tokens",
    [{}, {"HERALD_ADMIN_TOKEN": "a" * 32}, {"HERALD_INGEST_TOKEN": "i" * 32}],
    ids=["no token", "admin token only", "ingest token only"],
)
def test_serve_refuses_a_public_host_without_both_tokens_before_touching_anything(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    result = run_herald(
        [
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--database",
            sqlite_url(tmp_path),
        ],
        env=herald_environment(**tokens),
        cwd=tmp_path,
        timeout=10,
    )

    assert result.returncode == 2, result.stderr
    message = one_line(result.stderr)
    assert "refusing to listen on 0.0.0.0" in message
    assert "HERALD_ADMIN_TOKEN" in message and "HERALD_INGEST_TOKEN" in message
    assert not (tmp_path / "herald.db").exists()  # it stopped before opening the database


def test_serve_on_a_public_host_starts_when_both_tokens_are_set_and_guards_the_audit(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = herald_environment(HERALD_ADMIN_TOKEN="admin-secret", HERALD_INGEST_TOKEN="ingest-secret")
    with HeraldProcess("public", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--host", "0.0.0.0", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=env,
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/healthz", timeout=10)

        anonymous = httpx.get(base + "/audit/u_1", timeout=5)
        admin = httpx.get(
            base + "/audit/u_1", headers={"Authorization": "Bearer admin-secret"}, timeout=5
        )

        # With both tokens, any name may reach it (a proxy's, a load balancer's).
        named = httpx.get(base + "/healthz", headers={"Host": "herald.example.com"}, timeout=5)

        assert anonymous.status_code == 401
        assert admin.status_code == 404  # let in; there is no such user yet
        assert named.status_code == 200


def test_serve_with_one_api_process_ignores_a_server_pid_left_in_the_environment(
    tmp_path: Path,
) -> None:
    # HERALD_SERVER_PID is what `herald serve --workers N` hands its API processes, the
    # process they stop without. Left in the environment of a server with one process, it
    # made that process stop within a second of starting: the pid named was not running.
    gone = subprocess.Popen(["true"])
    gone.wait()
    port = free_port()
    with HeraldProcess("stray-pid", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=herald_environment(HERALD_SERVER_PID=str(gone.pid)),
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/healthz", timeout=10)
        time.sleep(2)  # the watch looks every half second

        assert httpx.get(base + "/healthz", timeout=5).status_code == 200
    assert "is gone; stopping" not in server.output()


def test_serve_without_tokens_answers_only_requests_addressed_to_loopback(
    tmp_path: Path,
) -> None:
    """A web page whose own name a DNS server answers with 127.0.0.1 (DNS rebinding) sends
    its requests same-origin to this server, with its own name as Host."""
    port = free_port()
    with HeraldProcess("tokenless", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=herald_environment(),
            cwd=tmp_path,
        )
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/healthz", timeout=10)

        rebound = httpx.get(base + "/rules", headers={"Host": f"rebound.example:{port}"}, timeout=5)
        direct = httpx.get(base + "/rules", timeout=5)

    assert rebound.status_code == 421
    assert "DNS rebinding" in rebound.json()["detail"]
    assert direct.status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_serve_refuses_an_admin_token_that_is_the_ingest_token(tmp_path: Path, host: str) -> None:
    """Every client allowed to send events would hold the key to the audit."""
    same = "one-token-for-everything"
    result = run_herald(
        ["serve", "--host", host, "--port", str(free_port()), "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_ADMIN_TOKEN=same, HERALD_INGEST_TOKEN=same),
        cwd=tmp_path,
        timeout=10,
    )

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: refusing to start: HERALD_ADMIN_TOKEN is the same as HERALD_INGEST_TOKEN"
    )
    assert same not in result.stderr
    assert not (tmp_path / "herald.db").exists()


def test_serve_refuses_an_in_memory_sqlite_database(tmp_path: Path) -> None:
    result = run_herald(
        ["serve", "--port", str(free_port()), "--database", "sqlite:///:memory:"],
        env=herald_environment(),
        cwd=tmp_path,
        timeout=10,
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
        timeout=10,
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
        timeout=10,
    )

    assert result.returncode == 1, result.stderr
    assert (
        "error: invalid settings: HERALD_LOG_FORMAT: Input should be 'text' or 'json' (got 'xml')"
    ) in one_line(result.stderr)


def test_serve_refuses_a_sqlite_file_in_a_missing_folder_and_creates_no_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "no" / "such"

    result = run_herald(
        ["serve", "--port", str(free_port()), "--database", f"sqlite:///{folder / 'h.db'}"],
        env=herald_environment(),
        cwd=tmp_path,
        timeout=10,
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
            timeout=20,
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
        timeout=20,
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
        timeout=20,
    )

    assert result.returncode == 1, result.stderr
    assert (
        f"error: the stub provider cannot write {outbox}: it is a folder; name a file in it"
        in one_line(result.stderr)
    )


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
        timeout=10,
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
        timeout=10,
    )

    assert result.returncode == 1, result.stderr
    message = one_line(result.stderr)
    assert str(rules) in message
    assert "signup_exploded" in message and "not a declared event type" in message


@pytest.mark.parametrize(
    ("api_host", "metrics_host"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "localhost")],
    ids=["same address", "every address", "a name for the same address"],
)
def test_serve_refuses_a_metrics_port_that_is_the_api_s_own_before_announcing(
    tmp_path: Path, api_host: str, metrics_host: str
) -> None:
    """Let through, the dispatcher process could never bind it: restarted every second
    for ever, while /readyz said ready and nothing was delivered."""
    port = free_port()
    env = herald_environment(
        HERALD_PORT=str(port),
        HERALD_METRICS_PORT=str(port),
        HERALD_METRICS_HOST=metrics_host,
        HERALD_ADMIN_TOKEN="admin-secret",
        HERALD_INGEST_TOKEN="ingest-secret",
    )

    result = run_herald(
        ["serve", "--host", api_host, "--database", sqlite_url(tmp_path)],
        env=env,
        cwd=tmp_path,
        timeout=10,
    )

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: the metrics port (HERALD_METRICS_PORT) is the API's port: ")
    assert line.endswith("; give the metrics a port of their own")
    assert f"{api_host}:{port}" in line
    assert not (tmp_path / "herald.db").exists()


def test_serve_refuses_an_api_port_already_taken_before_announcing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_herald(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            env=herald_environment(),
            cwd=tmp_path,
            timeout=10,
        )

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot serve the API on 127.0.0.1:{port}: Address already in use; choose "
        "another with --port or HERALD_PORT"
    ]
    assert not (tmp_path / "herald.db").exists()


# --- what it prints -------------------------------------------------------------------


@pytest.fixture
def url_with_password(postgres_url: str) -> tuple[str, str]:
    """The test database's URL with a password in it, and that password (trust
    authentication ignores it; a server that needs one keeps its own)."""
    url = make_url(postgres_url)
    password = url.password or "S3CRETPW"
    return url.set(password=password).render_as_string(hide_password=False), str(password)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("command", "startup_line"),
    [(["serve", "--no-dispatcher"], "Herald on http://"), (["worker"], "dispatcher ")],
    ids=["serve", "worker"],
)
def test_the_startup_line_shows_the_database_without_its_password(
    tmp_path: Path, url_with_password: tuple[str, str], command: list[str], startup_line: str
) -> None:
    url, password = url_with_password
    with HeraldProcess(command[0], log_dir=tmp_path) as process:
        process.start(
            [*command, "--database", url],
            herald_environment(HERALD_PORT=str(free_port())),
            cwd=tmp_path,
        )
        process.wait_for_output(startup_line)
        output = process.output()

    assert password not in output
    assert f"{make_url(url).username}:***@" in output


@pytest.mark.postgres
def test_the_startup_line_hides_a_password_given_as_a_parameter(
    tmp_path: Path, postgres_url: str
) -> None:
    """libpq takes ``?password=`` as well as ``user:password@``."""
    url = make_url(postgres_url).update_query_dict({"password": "S3CRETPW"})
    with HeraldProcess("worker", log_dir=tmp_path) as process:
        process.start(
            ["worker", "--database", url.render_as_string(hide_password=False)],
            herald_environment(),
            cwd=tmp_path,
        )
        process.wait_for_output("dispatcher ")
        output = process.output()

    assert "S3CRETPW" not in output
    assert "password=***" in output


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_the_startup_line_writes_an_ipv6_address_as_a_url_takes_it(tmp_path: Path) -> None:
    port = free_port()
    with HeraldProcess("ipv6", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--host", "::1", "--port", str(port), "--database", sqlite_url(tmp_path)],
            herald_environment(),
            cwd=tmp_path,
        )
        server.wait_for_output("Herald on ")
        [announced] = re.findall(r"Herald on (\S+) ", server.output())

        assert announced == f"http://[::1]:{port}"
        server.wait_healthy(announced + "/healthz", timeout=10)  # the URL as printed works


# --- request ids ---------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=sqlite_url(tmp_path),
        outbox_file=str(tmp_path / "outbox.jsonl"),
        dispatcher=False,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_every_response_carries_a_request_id_of_its_own(client: TestClient) -> None:
    first = client.get("/healthz")
    second = client.get("/healthz")

    assert first.headers["x-request-id"]
    assert second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_a_request_id_sent_by_the_client_is_echoed_back(client: TestClient) -> None:
    response = client.post(
        "/events", json=signup("u_1", "u_1@example.com"), headers={"X-Request-Id": "trace-7f3a"}
    )

    assert response.status_code == 202
    assert response.headers["x-request-id"] == "trace-7f3a"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/audit/nobody", None, 404),
        ("POST", "/events", {"user_id": "u_1"}, 422),
        ("POST", "/events", {"padding": "x" * 1_100_000}, 413),
    ],
    ids=["404", "422", "413"],
)
def test_error_responses_carry_the_request_id_too(
    client: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    response = client.request(method, path, json=body, headers={"X-Request-Id": "trace-err"})

    assert response.status_code == status
    assert response.headers["x-request-id"] == "trace-err"


# --- logs of a real server -----------------------------------------------------------


@pytest.fixture
def json_logging_server(tmp_path: Path) -> Iterator[tuple[HeraldProcess, str]]:
    """A server logging JSON down to DEBUG (where each stub send is logged), whose database
    refuses events of user ``u_poison``: such a request fails and logs the database error,
    which quotes the event's data."""
    url = sqlite_url(tmp_path)
    database = Database(url)
    upgrade(database)
    with database.writer.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.user_id = 'u_poison' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END"
        )
    database.dispose()
    port = free_port()
    env = herald_environment(
        HERALD_LOG_FORMAT="json",
        HERALD_LOG_LEVEL="DEBUG",
        HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"),
    )
    with HeraldProcess("json-logs", log_dir=tmp_path) as server:
        server.start(["serve", "--port", str(port), "--database", url], env=env, cwd=tmp_path)
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/readyz", timeout=10)
        yield server, base


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of ``output``, each a JSON object."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_with_json_logs_every_line_the_server_writes_is_json_the_banner_too(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    server, _base = json_logging_server
    server.wait_for_output('"message":"dispatcher ')  # its process starts beside the API

    lines = json_lines(server.output())  # fails on any line that is not JSON

    messages = [line["message"] for line in lines]
    assert any(m.startswith("Herald on http://127.0.0.1:") for m in messages)
    assert any(m.startswith("dispatcher ") for m in messages)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_with_json_logs_the_reason_a_process_will_not_start_is_a_json_line_too(
    command: str, tmp_path: Path
) -> None:
    """A log collector reading a JSON stream could not read the one line that says why
    the process stopped: it was plain text, `error: ...`."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("events: {}\nrules: []\nprovider: {}\n", encoding="utf-8")
    port = ["--port", str(free_port())] if command == "serve" else []

    refused = run_herald(
        [command, *port, "--database", sqlite_url(tmp_path), "--rules", str(rules)],
        env=herald_environment(HERALD_LOG_FORMAT="json"),
        cwd=tmp_path,
    )

    assert refused.returncode == 1, refused.stderr
    (line,) = json_lines(refused.stderr)  # one line, and JSON
    assert line["level"] == "ERROR"
    assert line["message"].startswith(f"{rules}: ") and "provider" in line["message"]


def test_uvicorn_s_own_lines_are_json_lines_too(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    server, _base = json_logging_server

    started = [line for line in json_lines(server.output()) if line["logger"].startswith("uvicorn")]

    assert "Application startup complete." in [line["message"] for line in started]
    assert not any("\x1b" in json.dumps(line) or "\\u001b" in json.dumps(line) for line in started)


def test_the_log_lines_of_a_request_carry_its_request_id(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    server, base = json_logging_server

    response = httpx.post(
        base + "/events",
        json=signup("u_poison", POISONED_EMAIL),
        headers={"X-Request-Id": "req-poison-1"},
        timeout=5,
    )

    assert response.status_code == 503
    failures = wait_for(
        lambda: [
            line
            for line in json_lines(server.output())
            if line["message"].startswith("ingestion failed")
        ],
        "the ingestion failure in the log",
    )
    assert [line.get("request_id") for line in failures] == ["req-poison-1"]
    assert failures[0]["level"] == "ERROR"


def test_json_logs_never_contain_a_raw_email_address_from_an_event(
    json_logging_server: tuple[HeraldProcess, str], tmp_path: Path
) -> None:
    server, base = json_logging_server

    delivered = httpx.post(base + "/events", json=signup("u_1", DISTINCTIVE_EMAIL), timeout=5)
    refused = httpx.post(base + "/events", json=signup("u_poison", POISONED_EMAIL), timeout=5)

    assert delivered.status_code == 202 and refused.status_code == 503
    outbox = tmp_path / "outbox.jsonl"
    wait_for(
        lambda: outbox.exists() and DISTINCTIVE_EMAIL in outbox.read_text(),
        "the welcome email, sent to the real address",
    )
    sends = wait_for(
        lambda: [
            line for line in json_lines(server.output()) if "z***@example.org" in line["message"]
        ],
        "the delivery in the log, naming the address by a hint",
    )
    assert "WELCOME_EMAIL" in sends[0]["message"]
    log = server.output()
    assert DISTINCTIVE_EMAIL not in log
    assert POISONED_EMAIL not in log
    assert "y***@example.org" in log  # the database error was logged, masked


def test_a_client_gone_before_its_body_arrived_is_one_info_line_not_a_server_error(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    server, base = json_logging_server
    port = int(base.rsplit(":", 1)[1])
    cut_short = [
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}"
        for path in ("/events", "/events/batch", "/users/u_1/preferences")
        for framing in (
            'Content-Length: 100\r\n\r\n{"user_id"',
            'Transfer-Encoding: chunked\r\n\r\n5\r\n{"use\r\n',
        )
    ]
    for request in cut_short:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(request.encode())

    gone = wait_for(
        lambda: (
            [
                line
                for line in json_lines(server.output())
                if line["message"].startswith("the client closed the connection")
            ]
            if server.output().count("the client closed the connection") >= len(cut_short)
            else None
        ),
        "a line for each request cut short",
    )
    assert {line["level"] for line in gone} == {"INFO"}
    assert "Exception in ASGI application" not in server.output()
    assert "Traceback" not in server.output()
