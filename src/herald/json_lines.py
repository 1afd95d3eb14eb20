"""JSON lines that every line splitter reads back one line per value."""

from __future__ import annotations

from typing import Any

import orjson

from herald.domain.bidi import BIDI_FORMATTING

# JSON allows U+0085, U+2028 and U+2029 raw in a string, and orjson writes them so; but a
# reader splitting lines on Unicode's line boundaries (Python's str.splitlines, many
# editors, JavaScript tools) cuts a line holding one in two, and neither half parses.
# Escaped, they read back as the same characters. In UTF-8 these bytes are never part
# of another character, and stand only inside strings (JSON's own syntax is ASCII).
_LINE_BREAKS = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def json_line(value: Any) -> bytes:
    """``value`` as JSON on one line, without the line's end."""
    return escape_line_breaks(orjson.dumps(value))


def escape_line_breaks(encoded: bytes) -> bytes:
    """JSON ``encoded`` with the line breaks JSON leaves raw written as escapes."""
    # A search for one byte is several times quicker than for three, and almost no line
    # has any of the separators' last bytes: it is done after these three.
    if b"\x85" not in encoded and b"\xa8" not in encoded and b"\xa9" not in encoded:
        return encoded
    for raw, escaped in _LINE_BREAKS:
        encoded = encoded.replace(raw, escaped)
    return encoded


# For a line shown to a person, beyond the line breaks: DEL and the C1 controls, which
# JSON allows raw, though U+009B is a terminal's CSI (ESC [ in one character, which xterm
# reads in UTF-8): a client's value holding it could clear the screen or hide what follows.
# And the bidirectional embeddings, overrides and isolates, which make the rest of a line
# display in another order than it holds. The controls below U+0020 JSON escapes itself.
SHOWN_ESCAPES = {
    code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), 0x2028, 0x2029, *BIDI_FORMATTING)
}


def shown_json(encoded: str) -> str:
    """JSON ``encoded`` with every character of ``SHOWN_ESCAPES`` written as its escape: a
    log line, or a command's output a terminal may show; it reads back as the same value."""
    return encoded.translate(SHOWN_ESCAPES)


def shown_json_line(value: Any) -> str:
    """``value`` as JSON on one line (see ``shown_json``), without the line's end."""
    return shown_json(orjson.dumps(value).decode())
