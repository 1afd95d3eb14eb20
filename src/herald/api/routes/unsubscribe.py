"""The unsubscribe links of marketing email (RFC 2369 ``List-Unsubscribe``, with RFC
8058's one-click POST): a page a recipient opens, and the POST that unsubscribes them.

The link's token is its authentication (an HMAC only this Herald's key makes): the
routes ask for no bearer token. A GET changes nothing, as mail scanners and link
previews fetch every link of an email; only the POST, from the page's button or from the
mail client's one-click unsubscribe, does."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from herald.api.deps import RuntimeDep, database_served
from herald.domain.unsubscribe_tokens import LINK_PATH, Unsubscriber, read_token
from herald.service.preferences import add_unsubscribes

router = APIRouter(tags=["unsubscribe"])


def for_recipients(path: str) -> bool:
    """Whether ``path`` is one of these routes, which the request edge lets take a form's
    body and any ``Host`` (see ``RequestEdge``)."""
    return path.startswith(LINK_PATH)


_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "Not a link this Herald made (altered, cut short, or signed with "
        "another key): a page saying so, and no more",
        "content": {"text/html": {}},
    },
}
# The token in the URL is the user's to keep: no page it leads to passes it on in a
# Referer, is kept in a shared cache, loads anything or runs a script.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
}


@router.get(
    LINK_PATH + "{token}",
    response_class=HTMLResponse,
    responses={200: {"description": "A page with a button that unsubscribes"}, **_ANSWERS},
)
def unsubscribe_page(token: str, runtime: RuntimeDep) -> HTMLResponse:
    """The page of an unsubscribe link: what it unsubscribes from, and a button that
    POSTs to this URL. Opening it changes nothing."""
    who = _unsubscriber(runtime, token)
    if who is None:
        return _not_a_link()
    return _page(
        "Unsubscribe",
        f"<p>Stop receiving marketing messages by {escape(who.channel)}?</p>"
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@router.post(
    LINK_PATH + "{token}",
    response_class=HTMLResponse,
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"List-Unsubscribe": {"enum": ["One-Click"]}},
                    }
                },
                "multipart/form-data": {"schema": {"type": "object"}},
            },
        }
    },
    responses={
        200: {"description": "Unsubscribed (again, if already so): a page saying so"},
        **_ANSWERS,
        415: {"description": "A body neither form data nor JSON"},
        503: {"description": "The database is unavailable; retry"},
    },
)
def unsubscribe(token: str, runtime: RuntimeDep, request: Request) -> HTMLResponse:
    """Unsubscribe the link's user from marketing on its channel (RFC 8058 one-click:
    ``List-Unsubscribe=One-Click``, or the page's button), adding it to the
    unsubscribes they have, and cancel their marketing messages waiting on it."""
    who = _unsubscriber(runtime, token)
    if who is None:
        return _not_a_link()
    add_unsubscribes(
        runtime.database,
        who.user_id,
        [who.channel],
        now=runtime.clock(),
        how="through an unsubscribe link",
    )
    database_served(request)
    channel = escape(who.channel)
    return _page(
        "Unsubscribed",
        f"<p>You will receive no more marketing messages by {channel}.</p>",
    )


def _unsubscriber(runtime: RuntimeDep, token: str) -> Unsubscriber | None:
    key = runtime.settings.unsubscribe_key
    return read_token(key, token) if key is not None else None


def _not_a_link() -> HTMLResponse:
    # Why (forged, altered, another key's) would only help whoever is trying tokens.
    return _page("Not found", "<p>This unsubscribe link is not valid.</p>", status_code=404)


def _page(title: str, content: str, *, status_code: int = 200) -> HTMLResponse:
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body><h1>{title}</h1>{content}</body></html>"
    )
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)
