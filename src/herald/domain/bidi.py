"""Unicode's bidirectional formatting characters: those that make text display as other text."""

from __future__ import annotations

# The embeddings and overrides (U+202A-U+202E) and the isolates (U+2066-U+2069) reorder
# how the text after them is displayed: an id holding one can read, in a table or a log
# line, as another user's ("Trojan Source"). Not the marks U+200E and U+200F, which
# start no reordering of their own and which right-to-left text relies on.
BIDI_FORMATTING = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))

# The same characters as the inside of a regular-expression class, read alike by Python
# and by ECMA-262 (the patterns of the OpenAPI document).
BIDI_FORMATTING_CLASS = r"\u202a-\u202e\u2066-\u2069"
