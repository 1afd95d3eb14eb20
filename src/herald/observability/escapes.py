"""Text a client or a receiver wrote, escaped for a line an operator reads: a log line, or
a command's listing in a terminal."""

from __future__ import annotations

from herald.domain.bidi import BIDI_FORMATTING

# Control characters as escapes: a value a client sent (a trait in an alert's text, a
# receiver's answer quoted in an error) cannot break a line in two, forge one, or send the
# terminal an escape sequence. Besides ASCII's, the C1 controls and the Unicode line and
# paragraph separators, where a reader splitting lines as Python's str.splitlines does
# (NEL, U+2028, U+2029) would start a new one. And the bidirectional overrides,
# embeddings and isolates, with which a value could make the rest of its line display in
# another order than it was written in.
BIDI_ESCAPES = {code: f"\\u{code:04x}" for code in BIDI_FORMATTING}
LINE_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    **BIDI_ESCAPES,
}


def escaped(text: str) -> str:
    """``text`` with every character of ``LINE_ESCAPES`` written as its escape."""
    return text.translate(LINE_ESCAPES)
