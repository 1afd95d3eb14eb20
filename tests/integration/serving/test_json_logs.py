"""The logs of a real server writing JSON: every line JSON, the request id on a request's
lines, no raw email address from an event, and a client gone early one INFO line."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment, run_herald, wait_for
from tests.support.serving import signup, sqlite_url

DISTINCTIVE_EMAIL = "zebulon.quartermaine@example.org"
POISONED_EMAIL = "yolanda.poisonwood@example.org"


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
        server.wait_healthy(base + "/readyz")
        yield server, base


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every whole line of ``output``, each a JSON object: read while the server runs, the
    output can end in the part of a line written so far."""
    whole = output[: output.rfind("\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


def ingestion_failures(server: HeraldProcess) -> list[dict[str, Any]]:
    """The server's JSON lines that say an ingestion failed, once there is one."""
    return wait_for(
        lambda: [
            line
            for line in json_lines(server.output())
            if line["message"].startswith("ingestion failed")
        ],
        "the ingestion failure in the log",
    )


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


@pytest.mark.parametrize(
    ("command", "variable"),
    [("serve", "HERALD_PORT"), ("worker", "HERALD_METRICS_PORT")],
    ids=["serve", "worker"],
)
def test_with_json_logs_a_refused_setting_is_a_json_line_too(
    command: str, variable: str, tmp_path: Path
) -> None:
    """The settings were read before the log format took effect, so the one line saying
    which of them was wrong came out as plain text in a JSON stream."""
    refused = run_herald(
        [command, "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_LOG_FORMAT="JSON", **{variable: "eighty"}),
        cwd=tmp_path,
    )

    assert refused.returncode == 1, refused.stderr
    (line,) = json_lines(refused.stderr)  # one line, and JSON
    assert line["level"] == "ERROR"
    assert line["message"].startswith(f"invalid settings: {variable}: ")


def test_a_wrong_log_format_is_refused_in_plain_text(tmp_path: Path) -> None:
    refused = run_herald(
        ["worker", "--database", sqlite_url(tmp_path)],
        env=herald_environment(HERALD_LOG_FORMAT="jsonl"),
        cwd=tmp_path,
    )

    assert refused.returncode == 1
    assert refused.stderr.startswith("error: invalid settings: HERALD_LOG_FORMAT: ")


def test_uvicorn_s_own_lines_are_json_lines_too(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    server, _base = json_logging_server

    started = [line for line in json_lines(server.output()) if line["logger"].startswith("uvicorn")]

    assert "Application startup complete." in [line["message"] for line in started]
    assert not any("\x1b" in json.dumps(line) or "\\u001b" in json.dumps(line) for line in started)


def test_at_debug_each_request_has_an_access_line_with_its_request_id(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    # uvicorn's access log was off whatever HERALD_LOG_LEVEL said: at DEBUG, where an
    # operator looks for every request, a request that logged nothing left no line.
    server, base = json_logging_server

    answer = httpx.get(base + "/healthz", headers={"X-Request-Id": "req-access-1"}, timeout=5)

    assert answer.status_code == 200
    access = wait_for(
        lambda: [
            line
            for line in json_lines(server.output())
            if line["logger"] == "uvicorn.access"
            and '"GET /healthz HTTP/1.1" 200' in line["message"]
        ],
        "the request's access line",
    )
    assert [line.get("request_id") for line in access] == ["req-access-1"]


def test_at_info_no_request_has_an_access_line(tmp_path: Path) -> None:
    """The default keeps them off: a line a request cost ingestion time for nothing an
    operator reads."""
    port = free_port()
    env = herald_environment(HERALD_LOG_FORMAT="json", HERALD_LOG_LEVEL="INFO")
    command = ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)]
    with HeraldProcess("info-logs", log_dir=tmp_path) as server:
        server.start([*command, "--no-dispatcher"], env=env, cwd=tmp_path)
        base = f"http://127.0.0.1:{port}"
        server.wait_healthy(base + "/readyz")
        for _ in range(3):
            assert httpx.get(base + "/healthz", timeout=5).status_code == 200
        server.stop()

        assert "uvicorn.access" not in server.output()
        assert "/healthz" not in server.output()


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
    failures = ingestion_failures(server)
    assert [line.get("request_id") for line in failures] == ["req-poison-1"]
    assert failures[0]["level"] == "ERROR"


def test_a_request_id_beyond_ascii_is_logged_as_the_client_wrote_it(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    # Read as Latin-1, `café` sent in UTF-8 was logged `cafÃ©`: a search of the log for
    # the id the client holds found nothing, though the answer gave it back unchanged.
    server, base = json_logging_server
    sent = "req-café-1".encode()

    response = httpx.post(
        base + "/events",
        json=signup("u_poison", POISONED_EMAIL),
        headers={"X-Request-Id": sent},
        timeout=5,
    )

    assert response.status_code == 503
    assert dict(response.headers.raw)[b"x-request-id"] == sent
    failures = ingestion_failures(server)
    assert [line.get("request_id") for line in failures] == ["req-café-1"]


def test_a_request_stored_after_another_s_logs_its_own_request_id(
    json_logging_server: tuple[HeraldProcess, str], tmp_path: Path
) -> None:
    # One request waits for SQLite's write lock, held as another process would; a second
    # comes meanwhile, to be written once the first is: its failure is its own line.
    server, base = json_logging_server
    holder = sqlite3.connect(tmp_path / "herald.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    def post(user: str, email: str, rid: str) -> httpx.Response:
        headers = {"X-Request-Id": rid}
        return httpx.post(base + "/events", json=signup(user, email), headers=headers, timeout=20)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, "u_first", DISTINCTIVE_EMAIL, "req-first")
        time.sleep(0.5)  # the first is waiting for the lock
        second = pool.submit(post, "u_poison", POISONED_EMAIL, "req-poison-2")
        time.sleep(0.5)  # the second is waiting behind it
        holder.execute("COMMIT")
        holder.close()
        assert first.result().status_code == 202
        assert second.result().status_code == 503

    failures = ingestion_failures(server)
    assert [line.get("request_id") for line in failures] == ["req-poison-2"]


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
                if line["message"].startswith("the connection closed before the whole body")
            ]
            if server.output().count("the connection closed before the whole body")
            >= len(cut_short)
            else None
        ),
        "a line for each request cut short",
    )
    assert {line["level"] for line in gone} == {"INFO"}
    assert "Exception in ASGI application" not in server.output()
    assert "Traceback" not in server.output()


def test_a_c1_control_a_client_sent_is_escaped_in_its_json_log_line(
    json_logging_server: tuple[HeraldProcess, str],
) -> None:
    """U+009B is CSI, one character, which terminals such as xterm read as ESC [ in
    UTF-8: raw in a JSON line, a request's id or path could clear an operator's screen
    running `tail -f` on the log, or colour it to hide what followed. JSON itself escapes
    only the controls below U+0020."""
    server, base = json_logging_server
    port = int(base.rsplit(":", 1)[1])
    request = (
        b"POST /users/u%C2%9B2J%7F/preferences HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"X-Request-Id: r\x9b31m\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"unsub'
    )
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(request)

    gone = wait_for(
        lambda: [
            line
            for line in server.output().splitlines()
            if "the connection closed before the whole body" in line and line.endswith("}")
        ],
        "the line of the request cut short",
    )
    assert "\x9b" not in gone[0] and "\x7f" not in gone[0]
    assert "\\u009b" in gone[0]
    entry = json.loads(gone[0])  # the escapes read back as the characters sent
    assert entry["request_id"] == "r\x9b31m"
    assert "/users/u\x9b2J\x7f/preferences" in entry["message"]
