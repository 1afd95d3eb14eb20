"""The SMTP servers the provider's tests send to, each a real aiosmtpd server on
127.0.0.1: a plain sink, and the certificate a TLS one presents."""

from collections.abc import Iterator

import pytest

from tests.support.smtp_sink import SmtpSink
from tests.support.tls import Certificate, self_signed_certificate


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))
