"""/docs and /redoc work on a host without internet access: each page loads its scripts,
stylesheet and icon from the Herald server that serves it, never from a CDN."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from tests.support.api_requests import guarded
from tests.support.serving import sqlite_url

# The smallest of the assets (the Swagger UI stylesheet) is about 180 kB: a body this
# small is an error page or an empty file, not the UI.
NON_TRIVIAL_BYTES = 50_000


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app on SQLite alone: the pages do not depend on the store."""
    with TestClient(create_app(guarded(sqlite_url(tmp_path), tmp_path))) as test_client:
        yield test_client


class _Assets(HTMLParser):
    """The URLs a page loads: its scripts, stylesheets and icon."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.icons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {name: value or "" for name, value in attrs}
        if tag == "script" and named.get("src"):
            self.scripts.append(named["src"])
        elif tag == "link" and "stylesheet" in named.get("rel", "").split():
            self.stylesheets.append(named["href"])
        elif tag == "link" and "icon" in named.get("rel", "").split():
            self.icons.append(named["href"])


def assets_of(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    return parser


def same_origin(url: str) -> bool:
    """Whether ``url`` is a path on the server that served the page: no scheme, no host
    (``//cdn.example/x.js`` names another host too)."""
    return url.startswith("/") and not url.startswith("//")


@pytest.mark.parametrize(("page", "scripts", "stylesheets"), [("/docs", 1, 1), ("/redoc", 1, 0)])
def test_a_docs_page_names_only_assets_of_its_own_server(
    client: TestClient, page: str, scripts: int, stylesheets: int
) -> None:
    answer = client.get(page)

    assert answer.status_code == 200
    assets = assets_of(answer.text)
    assert len(assets.scripts) == scripts and len(assets.stylesheets) == stylesheets
    for url in [*assets.scripts, *assets.stylesheets, *assets.icons]:
        assert same_origin(url), f"{page} loads {url} from another host"
    assert "https://" not in answer.text and "http://" not in answer.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_each_asset_a_docs_page_names_is_served_with_its_type(
    client: TestClient, page: str
) -> None:
    assets = assets_of(client.get(page).text)
    expected = [
        *((url, "javascript") for url in assets.scripts),
        *((url, "text/css") for url in assets.stylesheets),
        *((url, "image/png") for url in assets.icons),
    ]

    for url, media_type in expected:
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert media_type in answer.headers["content-type"], (url, answer.headers)
        if media_type != "image/png":
            assert len(answer.content) > NON_TRIVIAL_BYTES, url


def test_the_docs_page_keeps_its_icon(client: TestClient) -> None:
    (icon,) = assets_of(client.get("/docs").text).icons

    answer = client.get(icon)

    assert answer.status_code == 200
    assert answer.content.startswith(b"\x89PNG")


def test_the_swagger_ui_served_renders_openapi_3_1(client: TestClient) -> None:
    # Swagger UI 4 shows "Unable to render this definition" for the 3.1 document FastAPI
    # writes: the page would load and show no operation.
    (script,) = assets_of(client.get("/docs").text).scripts
    bundle = client.get(script).text

    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert 'PACKAGE_VERSION:"5.' in bundle


def test_the_docs_assets_ask_for_no_token_as_the_docs_page_does_not(tmp_path: Path) -> None:
    # They hold no personal data; a token asked for them would leave /docs blank.
    settings = guarded(
        sqlite_url(tmp_path), tmp_path, admin_token="admin-secret", ingest_token="ingest-secret"
    )
    with TestClient(create_app(settings)) as client:
        page = client.get("/docs")
        assets = assets_of(page.text)
        answers = [client.get(url) for url in [*assets.scripts, *assets.stylesheets]]

    assert page.status_code == 200
    assert [answer.status_code for answer in answers] == [200, 200]


def test_an_unknown_docs_asset_is_not_found(client: TestClient) -> None:
    (script,) = assets_of(client.get("/docs").text).scripts
    folder = script.rsplit("/", 1)[0]

    assert client.get(f"{folder}/no-such-file.js").status_code == 404
    assert client.get(f"{folder}/").status_code == 404  # no listing of the folder
