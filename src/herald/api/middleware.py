"""The edge of every request, as one pure ASGI middleware (cheaper per request than
Starlette's BaseHTTPMiddleware or a stack of small ones): a request id for the
response and the logs, a body-size limit enforced before the body is read (on the
requests whose body a route reads), and clear
refusals of compressed bodies (read as JSON they would be a puzzling 422), of bodies
that do not say they are JSON, and of JSON in another charset than UTF-8 (read as UTF-8,
a Latin-1 body could be stored with other characters than it holds), and a quiet end,
one log line, for a request whose connection closed before its whole body arrived. A path
whose %-escapes are not UTF-8 is refused, rather than read with replacement characters,
and so, on a server without both tokens, is a request addressed to another host than
a loopback one. A body that would be refused, of a request without the bearer token its
route asks for, is answered that route's 401 instead."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from starlette.requests import ClientDisconnect

from herald.config import is_loopback_host
from herald.observability.logging import request_id

Scope = dict[str, Any]
log = logging.getLogger(__name__)


class RequestEdge:
    def __init__(
        self,
        app: Any,
        *,
        body_limit: int,
        body_limit_by_path: dict[str, int],
        reads_body: Callable[[str, str], bool],
        body_refused: Callable[[Scope], None] = lambda scope: None,
        token_refusal: Callable[[Scope], str | None] = lambda scope: None,
        loopback_only: bool = False,
        for_recipients: Callable[[str], bool] = lambda path: False,
    ) -> None:
        """``reads_body(method, path)``: whether a route reads the body of such a request;
        the others' bodies are neither checked nor read, so a request to a path or with a
        method no route takes is answered 404 or 405 whatever its body. ``body_refused``
        is told of each request whose body is refused here (a 413 or a 415), which no
        route then sees. ``token_refusal(scope)``: why a request lacks the bearer token
        its route asks for (the detail of a 401), else None; asked only of a request
        whose body would be refused, which is then answered that 401 instead, as its
        route would answer it, and is not told to ``body_refused``. ``loopback_only``:
        refuse requests whose ``Host`` is not a loopback name (see
        ``Settings.loopback_requests_only``). ``for_recipients(path)``: whether the path
        is a route recipients reach from an email (an unsubscribe link), whose own token
        authenticates it: it takes a form's body (as a mail client's one-click POST sends
        it) as well as JSON, and any ``Host``, as it is reached through a proxy by the
        public name the links carry."""
        self.app = app
        self.body_limit = body_limit
        self.body_limit_by_path = body_limit_by_path
        self.reads_body = reads_body
        self.body_refused = body_refused
        self.token_refusal = token_refusal
        self.loopback_only = loopback_only
        self.for_recipients = for_recipients
        self._loopback_hosts: set[bytes] = set()  # Host values found loopback: a few
        # A random per-process prefix and a counter: unique, and cheaper than uuid4 per request.
        self._prefix = uuid.uuid4().hex[:12]
        self._counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid: str | None = None
        sent_id = b""  # the id as the client sent it, up to its 64th character
        length: int | None = None
        chunked = False
        encoding = b"identity"
        media_type = b""
        charset: bytes | None = None
        host = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"x-request-id":
                rid, sent_id = _request_id(value)
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-encoding":
                encoding = value.strip().lower()
            elif name == b"content-type":
                media_type, _, parameters = value.partition(b";")
                media_type = media_type.strip().lower()
                charset = _charset(parameters) if parameters else None
        if not rid:
            rid = f"{self._prefix}-{next(self._counter):x}"
            sent_id = rid.encode("ascii")
        header = (b"x-request-id", sent_id)

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append(header)
            await send(message)

        token = request_id.set(rid)
        try:
            # A page that reached this server by DNS rebinding gains nothing from a route
            # for recipients: without a link's token, it is answered 404.
            if (
                self.loopback_only
                and not self._addressed_to_loopback(host)
                and not self.for_recipients(scope["path"])
            ):
                said = host.decode("latin-1")
                await _reply(send_with_id, 421, f"{_NOT_LOOPBACK} (got Host {said!r})")
                return
            raw_path = scope.get("raw_path") or b""
            # find, not `in`: bytes' `in` first tries its operand as an integer, and the
            # TypeError it raises and drops cost more than the search (~1,900 instructions).
            if raw_path.find(b"%") != -1 and not _utf8_once_decoded(raw_path):
                await _reply(send_with_id, 400, _NOT_UTF8)
                return
            limit = self.body_limit_by_path.get(scope["path"], self.body_limit)
            # HTTP/1.1 frames a body by its Content-Length or Transfer-Encoding: a request
            # with neither has none (a bare POST to a GET route is a 405, not a 415).
            framed = length != 0 if length is not None else chunked
            has_body = framed and self.reads_body(scope["method"], scope["path"])
            if has_body and encoding not in (b"identity", b""):
                detail = f"Content-Encoding {encoding.decode('latin-1')!r} is not supported: "
                await self._refuse(scope, send_with_id, 415, detail + "send the body uncompressed")
            elif (
                has_body
                and not _is_json(media_type)
                and not (media_type in _FORMS and self.for_recipients(scope["path"]))
            ):
                # Also what keeps a web page from posting here: a browser sends another
                # origin JSON only after asking (CORS), but text/plain without asking.
                got = f"Content-Type {media_type.decode('latin-1')!r}" if media_type else "none"
                detail = f"send JSON as application/json (got {got})"
                if self.for_recipients(scope["path"]):
                    detail = f"send a form, {' or '.join(map(bytes.decode, _FORMS))} (got {got})"
                await self._refuse(scope, send_with_id, 415, detail)
            elif has_body and charset is not None and charset not in _UTF_8:
                said = charset.decode("latin-1")
                detail = f"send JSON in UTF-8 (got charset {said!r})"
                await self._refuse(scope, send_with_id, 415, detail)
            elif has_body and length is not None and length > limit:
                # Only where a body is read: a GET's is discarded unread whatever its size,
                # so a 413 there would refuse a request for what it does not use (and no
                # GET route's document lists one).
                await self._refuse(scope, send_with_id, 413, _too_large(limit))
            elif length is not None or not has_body:
                # The server delivers no more than the declared length, and a route that
                # reads no body reads none of it: nothing to count.
                await self.app(scope, receive, send_with_id)
            else:
                await self._counting(scope, receive, send_with_id, limit)
        except ClientDisconnect:
            # The connection closed before the whole body arrived: the client left (a
            # timeout, a lost network), or the server closed it, the body being late
            # (see herald.cli.http_protocol). Nothing was read or stored, and no one is
            # left to answer. Not a server error, which uvicorn would log it as, with a
            # traceback.
            log.info(
                "the connection closed before the whole body of %s %s arrived "
                "(the client left, or sent it too slowly)",
                scope["method"],
                scope["path"],
            )
        finally:
            request_id.reset(token)

    async def _refuse(self, scope: Scope, send: Any, status: int, detail: str) -> None:
        """Refuse the body of a request, answering ``status`` with ``detail``, unless the
        request lacks the token its route asks for: then the 401 its route would answer.
        A client without the token learns nothing of what the route takes, and counts
        as no event (see ``herald_events_total``): it is no client of this server's."""
        missing_token = self.token_refusal(scope)
        if missing_token is not None:
            await _reply(send, 401, missing_token, _ASKS_FOR_BEARER)
            return
        self.body_refused(scope)
        await _reply(send, status, detail)

    def _addressed_to_loopback(self, host: bytes) -> bool:
        """Whether ``host`` (a Host header, with or without its port) names a loopback
        address; no header (HTTP/1.0, never a browser) is let through."""
        if not host or host in self._loopback_hosts:
            return True
        text = host.decode("latin-1").lower()
        name = text.partition("]")[0].lstrip("[") if text.startswith("[") else text.split(":")[0]
        if not (is_loopback_host(name) or name.endswith(".localhost")):
            return False
        if len(self._loopback_hosts) < 64:  # a client's many spellings must not grow it
            self._loopback_hosts.add(host)
        return True

    async def _counting(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        """A body of no declared length (chunked): counted as the app reads it. Past the
        limit the middleware answers 413 itself and the app reads the end of the body
        (a disconnect), whatever answer it makes of that is dropped: an error raised into
        the app's read would reach FastAPI's body parsing, which answers it with 400."""
        seen = 0
        refused = False

        async def limited_receive() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    # The route checked the token before reading: no 401 to answer.
                    self.body_refused(scope)
                    await _reply(send, 413, _too_large(limit))
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_refused(message: Any) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, send_unless_refused)
        except ClientDisconnect:
            if not refused:
                raise


_NOT_LOOPBACK = (
    "without both HERALD_ADMIN_TOKEN and HERALD_INGEST_TOKEN, Herald answers only requests "
    "addressed to localhost or a loopback address: a web page could otherwise reach it by "
    "DNS rebinding. Set both tokens to serve it under another name"
)


# The bodies RFC 8058 lets a mail client's one-click unsubscribe send.
_FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")


# JSON is UTF-8 (RFC 8259); US-ASCII is a part of it.
_UTF_8 = (b"utf-8", b"utf8", b"us-ascii")


def _charset(parameters: bytes) -> bytes | None:
    """The charset a Content-Type's ``parameters`` (after its first ``;``) name, lowered
    and unquoted, or None when they name none."""
    for parameter in parameters.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip().lower() == b"charset":
            return value.strip().strip(b'"').lower()
    return None


# The server decodes the path's %-escapes as UTF-8, replacing what is not with U+FFFD:
# "Jos%E9" (José in Latin-1, as some clients still escape it) would name the user "Jos�",
# and an unsubscribe sent for José would be stored for that other, new user.
_NOT_UTF8 = (
    "the path is not UTF-8 once its %-escapes are decoded: escape each character of an "
    "id as its UTF-8 bytes (José is Jos%C3%A9)"
)


def _utf8_once_decoded(raw_path: bytes) -> bool:
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_json(media_type: bytes) -> bool:
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes"


def _request_id(value: bytes) -> tuple[str, bytes]:
    """The first 64 characters of a client's ``X-Request-Id``, read as UTF-8 when it is,
    and those characters as the client sent them, for the answer's header. Read as
    Latin-1 alone, `café` sent in UTF-8 was logged `cafÃ©`, and a search of the log for
    the id the client holds found nothing. One not UTF-8 is read as Latin-1, the
    characters HTTP first gave header bytes, so that it is never refused or lost."""
    if value.isascii():  # nearly every id: no decoding to try and fail
        return value[:64].decode("ascii"), value[:64]
    try:
        rid = value.decode("utf-8")[:64]
        return rid, rid.encode("utf-8")
    except UnicodeDecodeError:
        return value[:64].decode("latin-1"), value[:64]


_ASKS_FOR_BEARER = ((b"www-authenticate", b"Bearer"),)


async def _reply(
    send: Any, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
