"""A recipient as operators see it (decisions, logs): a hint, never the whole value."""

from __future__ import annotations

import pytest

from herald.domain.recipients import mask_recipient


@pytest.mark.parametrize(
    ("recipient", "masked"),
    [
        ("maria@example.com", "m***@example.com"),
        ("+351912345678", "***78"),
        ("internal", "internal"),
    ],
)
def test_a_recipient_is_masked_down_to_a_hint(recipient: str, masked: str) -> None:
    assert mask_recipient(recipient) == masked


@pytest.mark.parametrize("short", ["", "1", "12"])
def test_a_value_of_two_characters_or_fewer_is_hidden_whole(short: str) -> None:
    assert mask_recipient(short) == "***"


@pytest.mark.parametrize(("short", "masked"), [("123", "***23"), ("1234", "***34")])
def test_a_short_number_shows_two_characters_never_the_whole_number(
    short: str, masked: str
) -> None:
    assert mask_recipient(short) == masked
