import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.delivery.providers.signing import SIGNATURE_HEADER, sign, signature_header, verify

SECRET = b"whsec_test"
BODY = b'{"message_id":"m-1","subject":"Hello"}'
NOW = 1_718_000_000


def test_the_signature_is_hex_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1718000000." + BODY, hashlib.sha256).hexdigest()

    assert sign(SECRET, NOW, BODY) == expected


def test_the_header_carries_the_timestamp_and_the_v1_signature() -> None:
    assert signature_header(SECRET, NOW, BODY) == f"t={NOW},v1={sign(SECRET, NOW, BODY)}"
    assert SIGNATURE_HEADER == "Herald-Signature"


def test_the_example_in_the_module_documentation_is_correct() -> None:
    header = signature_header(b"whsec_example", 1718000000, b'{"message_id":"m-1"}')

    assert header == (
        "t=1718000000,v1=37cb32798bf0646e75be7128dcbed002798014b74f5dfc9f162a4c11e02e1892"
    )


def test_a_fresh_signature_of_the_same_body_verifies() -> None:
    header = signature_header(SECRET, NOW, BODY)

    assert verify(SECRET, header, BODY, now=NOW + 5) is True


def test_a_changed_body_does_not_verify() -> None:
    header = signature_header(SECRET, NOW, BODY)

    assert verify(SECRET, header, BODY.replace(b"Hello", b"Hellp"), now=NOW) is False


def test_another_secret_does_not_verify() -> None:
    header = signature_header(SECRET, NOW, BODY)

    assert verify(b"whsec_other", header, BODY, now=NOW) is False


def test_a_changed_timestamp_does_not_verify() -> None:
    signature = sign(SECRET, NOW, BODY)

    assert verify(SECRET, f"t={NOW + 1},v1={signature}", BODY, now=NOW) is False


def test_a_timestamp_exactly_at_the_tolerance_is_accepted() -> None:
    header = signature_header(SECRET, NOW, BODY)

    assert verify(SECRET, header, BODY, now=NOW + 300) is True
    assert verify(SECRET, header, BODY, now=NOW - 300) is True


def test_a_replayed_request_older_than_the_tolerance_is_rejected() -> None:
    header = signature_header(SECRET, NOW, BODY)

    assert verify(SECRET, header, BODY, now=NOW + 301) is False
    assert verify(SECRET, header, BODY, now=NOW + 3_600, tolerance=3_600) is True


def test_a_timestamp_too_far_in_the_future_is_rejected() -> None:
    header = signature_header(SECRET, NOW, BODY)

    assert verify(SECRET, header, BODY, now=NOW - 301) is False


def test_any_matching_v1_among_several_verifies_so_secrets_can_be_rotated() -> None:
    old = sign(b"whsec_old", NOW, BODY)
    new = sign(SECRET, NOW, BODY)

    assert verify(SECRET, f"t={NOW},v1={old},v1={new}", BODY, now=NOW) is True
    assert verify(b"whsec_old", f"t={NOW},v1={old},v1={new}", BODY, now=NOW) is True


def test_unknown_schemes_and_spaces_are_tolerated() -> None:
    header = f"t={NOW}, v0=abc, v1={sign(SECRET, NOW, BODY)}"

    assert verify(SECRET, header, BODY, now=NOW) is True


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"t={NOW}",
        f"v1={sign(SECRET, NOW, BODY)}",
        f"t=soon,v1={sign(SECRET, NOW, BODY)}",
        f"t={NOW},v1=",
        f"t={NOW},v1=é{sign(SECRET, NOW, BODY)[1:]}",
        f"t={NOW},v0={sign(SECRET, NOW, BODY)}",
    ],
)
def test_a_malformed_header_is_rejected_without_raising(header: str) -> None:
    assert verify(SECRET, header, BODY, now=NOW) is False


@given(
    secret=st.binary(min_size=1, max_size=64),
    body=st.binary(max_size=2_048),
    timestamp=st.integers(min_value=0, max_value=2**40),
    skew=st.integers(min_value=-300, max_value=300),
)
def test_whatever_is_signed_verifies_within_the_tolerance(
    secret: bytes, body: bytes, timestamp: int, skew: int
) -> None:
    header = signature_header(secret, timestamp, body)

    assert verify(secret, header, body, now=timestamp + skew) is True
