"""/docs (Swagger UI) and /redoc, with their scripts, stylesheet and icon served by
Herald itself: FastAPI's own pages load them from a CDN, and on a host without internet
access (a back office's, often) they stayed blank. Whoever types a token into /docs'
"Authorize" also runs only the code this server ships, not what a CDN serves that day.

The files are those of the ``fastapi-offline`` package (Swagger UI 5, which renders the
OpenAPI 3.1 document FastAPI writes, and ReDoc 2); only its files are used, through
FastAPI's own page builders. The pages name each file with that package's version, so
that a browser keeps it (see ``VersionedAssets``).
"""

from __future__ import annotations

from importlib.metadata import version
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Under /docs, so a proxy that lets /docs through lets its assets through too.
ASSETS_URL = "/docs/assets"
ASSETS_PACKAGE = "fastapi-offline"


def serve_docs_pages(app: FastAPI) -> None:
    """Add /docs, its OAuth2 redirect page, /redoc and the files they load to ``app``
    (made with ``docs_url=None, redoc_url=None``); nothing to an app without a document
    (``openapi_url=None``), as FastAPI does. Like /openapi.json, none asks for a
    token: they hold no personal data, and a page whose files asked for one would stay
    blank. A path is prefixed with the request's ``root_path``, as FastAPI's pages do."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    assets = VersionedAssets(
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        version(ASSETS_PACKAGE),
    )
    app.mount(ASSETS_URL, assets, name="docs-assets")

    def asset(root: str, name: str) -> str:
        return f"{root}{ASSETS_URL}/{name}?{assets.query}"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(root, "swagger-ui-bundle.js"),
            swagger_css_url=asset(root, "swagger-ui.css"),
            swagger_favicon_url=asset(root, "favicon.png"),
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(root, "redoc.standalone.js"),
            redoc_favicon_url=asset(root, "favicon.png"),
            # Google's fonts are a request to the internet too; ReDoc falls back to the
            # browser's own.
            with_google_fonts=False,
        )

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)


def _root(request: Request) -> str:
    """The path the app is mounted at behind a proxy (``root_path``), which the pages'
    own URLs begin with, as FastAPI's do."""
    return str(request.scope.get("root_path", "")).rstrip("/")


class VersionedAssets:
    """The files of ``ASSETS_PACKAGE``, with the ``Cache-Control`` their URL allows. One
    that names the installed ``package_version`` (``?v=``, as the pages write it) never
    changes its content: the browser keeps it a year without asking again (Swagger UI's
    script is about 1.5 MB), and upgrading the package changes the URLs the pages name.
    One that names none or another (a link, a page of a process not yet upgraded) is
    asked again each time, answered 304 while the file is unchanged. A refusal (404,
    405) is not kept."""

    def __init__(self, files: ASGIApp, package_version: str) -> None:
        self.files = files
        self.query = urlencode({"v": package_version})
        self._versioned = self.query.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        versioned = scope.get("query_string") == self._versioned
        cache_control = (b"cache-control", _KEPT if versioned else _ASKED_AGAIN)

        async def send_cacheable(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                headers = [*message.get("headers", ()), cache_control]
                message = {**message, "headers": headers}
            await send(message)

        await self.files(scope, receive, send_cacheable)


_KEPT = b"public, max-age=31536000, immutable"
_ASKED_AGAIN = b"no-cache"
