"""The line a server or a dispatcher prints as it starts: the database without its
password, and an IPv6 address written as a URL takes it."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment
from tests.support.serving import sqlite_url


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
        server.wait_healthy(announced + "/healthz")  # the URL as printed works
