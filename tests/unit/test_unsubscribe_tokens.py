import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.domain.unsubscribe_tokens import Unsubscriber, read_token, unsubscribe_token

KEY = "k" * 32


def _decoded(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def test_a_token_reads_back_as_the_user_and_channel_it_was_made_for() -> None:
    token = unsubscribe_token(KEY, "u_1", "email")

    assert read_token(KEY, token) == Unsubscriber("u_1", "email")


# Any text but U+0000 and lone surrogates, which no stored id holds.
_IDS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=128,
)


@given(user_id=_IDS)
def test_any_user_id_an_event_may_carry_goes_through_a_token(user_id: str) -> None:
    token = unsubscribe_token(KEY, user_id, "sms")

    assert read_token(KEY, token) == Unsubscriber(user_id, "sms")


def test_a_token_is_made_of_characters_a_url_path_keeps_as_they_are() -> None:
    token = unsubscribe_token(KEY, "josé@example.com/../x?y#z", "email")

    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_the_same_user_and_channel_always_get_the_same_token() -> None:
    # No expiry and no randomness: a link in a months-old email must still work.
    assert unsubscribe_token(KEY, "u_1", "email") == unsubscribe_token(KEY, "u_1", "email")


def test_a_token_made_with_another_key_is_refused() -> None:
    token = unsubscribe_token("o" * 32, "u_1", "email")

    assert read_token(KEY, token) is None


def _tampered(token: str, old: bytes, new: bytes) -> str:
    payload, mac = token.split(".")
    return f"{_encoded(_decoded(payload).replace(old, new))}.{mac}"


def test_a_token_whose_user_id_was_changed_is_refused() -> None:
    token = unsubscribe_token(KEY, "u_1", "email")

    assert read_token(KEY, _tampered(token, b"u_1", b"u_2")) is None


def test_a_token_whose_channel_was_changed_is_refused() -> None:
    token = unsubscribe_token(KEY, "u_1", "email")

    assert read_token(KEY, _tampered(token, b"email", b"sms")) is None


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_a_truncated_token_is_refused(cut: int) -> None:
    token = unsubscribe_token(KEY, "u_1", "email")

    assert read_token(KEY, token[:-cut]) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "a.b.c", "!!!.???", "dTE.", ".dTE", "dTE=.AAAA", " dTE.AAAA"],
)
def test_a_token_not_of_the_form_is_refused_without_an_error(token: str) -> None:
    assert read_token(KEY, token) is None


def test_a_token_whose_mac_was_changed_is_refused() -> None:
    payload, mac = unsubscribe_token(KEY, "u_1", "email").split(".")
    flipped = bytes([_decoded(mac)[0] ^ 1]) + _decoded(mac)[1:]

    assert read_token(KEY, f"{payload}.{_encoded(flipped)}") is None
