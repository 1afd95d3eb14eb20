"""JSON lines that every line splitter reads back one line per value."""

from __future__ import annotations

from typing import Any

import orjson

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
