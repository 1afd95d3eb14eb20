"""The files /docs and /redoc load are cached by the browser: each page names them by the
installed version of the package that ships them, so that a URL never changes its
content and is kept without asking again, and a new version is a new URL."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from herald.api.app import create_app
from tests.integration.api.test_docs_pages import assets_of
from tests.support.api_requests import guarded
from tests.support.serving import sqlite_url

KEPT = "public, max-age=31536000, immutable"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(guarded(sqlite_url(tmp_path), tmp_path))) as test_client:
        yield test_client


def _named_by(client: TestClient, page: str) -> list[str]:
    assets = assets_of(client.get(page).text)
    return [*assets.scripts, *assets.stylesheets, *assets.icons]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_each_asset_a_page_names_carries_the_version_and_is_kept_by_the_browser(
    client: TestClient, page: str
) -> None:
    urls = _named_by(client, page)

    assert urls
    for url in urls:
        assert url.endswith(f"?v={version('fastapi-offline')}"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["cache-control"] == KEPT, url


def test_an_asset_asked_for_without_the_version_is_asked_for_again_each_time(
    client: TestClient,
) -> None:
    # A link or an old page: its content may change with the package, so the browser
    # checks, and an unchanged file is answered 304 without its body.
    (script,) = assets_of(client.get("/docs").text).scripts
    unversioned = script.partition("?")[0]

    first = client.get(unversioned)
    again = client.get(unversioned, headers={"If-None-Match": first.headers["etag"]})
    other = client.get(f"{unversioned}?v=0.0.1")

    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"
    assert other.headers["cache-control"] == "no-cache"


def test_a_missing_asset_is_not_kept(client: TestClient) -> None:
    answer = client.get(f"/docs/assets/no-such-file.js?v={version('fastapi-offline')}")

    assert answer.status_code == 404
    assert "cache-control" not in answer.headers


def test_the_pages_themselves_are_not_kept_as_their_assets_are(client: TestClient) -> None:
    # A page names the version installed now: kept, it would name an old one.
    for page in ("/docs", "/redoc"):
        assert "cache-control" not in client.get(page).headers
