"""A body is limited where Herald reads one: a GET or HEAD answers as it would without
its body, whatever that body's size, as /openapi.json (which lists 413 only on the
routes that take a body) says. Over HTTP, through uvicorn, as a client sends them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment

OVER_1_MIB = b" " * (2**20 + 1)
READ_ONLY_ROUTES = ["/healthz", "/readyz", "/audit/nobody", "/rules", "/openapi.json"]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with HeraldProcess("serve", log_dir=folder) as server:
        server.start(
            ["serve", "--port", str(port), "--database", f"sqlite:///{folder / 'herald.db'}"],
            herald_environment(HERALD_DISPATCHER="false"),
            cwd=folder,
        )
        server.wait_healthy(url + "/readyz")
        yield url


@pytest.mark.parametrize("path", READ_ONLY_ROUTES)
def test_a_get_with_a_body_over_the_limit_is_answered_as_without_one(
    base_url: str, path: str
) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        document = client.get("/openapi.json").json()
        plain = client.get(path)
        with_body = client.request("GET", path, content=OVER_1_MIB)
        after = client.get(path)  # on the same connection: the body was read off it

    assert with_body.status_code == plain.status_code, with_body.text[:200]
    assert with_body.json() == plain.json()
    assert after.status_code == plain.status_code
    route = "/audit/{user_id}" if path.startswith("/audit/") else path
    if route != "/openapi.json":  # the document does not describe itself
        assert str(with_body.status_code) in document["paths"][route]["get"]["responses"]


def test_a_head_with_a_body_over_the_limit_is_answered_as_without_one(base_url: str) -> None:
    answer = httpx.request("HEAD", base_url + "/healthz", content=OVER_1_MIB, timeout=10)

    assert answer.status_code == 200


def test_a_post_over_the_limit_is_still_refused_as_its_document_says(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        document = client.get("/openapi.json").json()
        answer = client.post(
            "/events", content=OVER_1_MIB, headers={"Content-Type": "application/json"}
        )

    assert answer.status_code == 413
    assert answer.json() == {"detail": "request body larger than 1048576 bytes"}
    assert "413" in document["paths"]["/events"]["post"]["responses"]
