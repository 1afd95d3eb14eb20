"""A request body as the JSON parser is to read it."""

from __future__ import annotations

from starlette.requests import Request

_UTF8_BOM = b"\xef\xbb\xbf"


async def json_body(request: Request) -> bytes:
    """The body of ``request`` without a UTF-8 byte order mark at its start. JSON has none,
    but a file saved by some editors and Windows tools begins with one, and RFC 8259 lets
    a parser ignore it: refused, it was a puzzling "Invalid JSON ... at line 1 column 1"
    for a body that looks right."""
    return (await request.body()).removeprefix(_UTF8_BOM)
