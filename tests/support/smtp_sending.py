"""Sending through an SmtpProvider in tests: the request they send, one send on a provider
of its own, several in turn, and a TLS context trusting a test certificate."""

import asyncio
import ssl

from herald.delivery.provider import DeliveryResult, Provider, SendRequest
from herald.delivery.providers.smtp import SmtpProvider
from tests.support.tls import Certificate

SENDER = "Herald <noreply@herald.test>"


REQUEST = SendRequest(
    message_id="msg-0001",
    channel="email",
    recipient="ada@example.com",
    rule="welcome",
    dedup_key="user-7:welcome",
    user_id="user-7",
    event_id="evt-99",
    subject="Welcome to Herald, Ada\n",
    body="Hello Ada — welcome aboard.",
    html="<p>Hello <b>Ada</b> — welcome aboard.</p>",
)


def send_once(port: int, request: SendRequest = REQUEST, **options: object) -> DeliveryResult:
    """Build a provider for 127.0.0.1:port, send one request, close the provider."""

    async def scenario() -> DeliveryResult:
        provider = SmtpProvider(
            name="mail",
            host="127.0.0.1",
            port=port,
            **{"sender": SENDER, **options},  # type: ignore[arg-type]
        )
        try:
            return await provider.send(request)
        finally:
            await provider.aclose()

    return asyncio.run(scenario())


def trusting(certificate: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate.cert_file)


def send_all(provider: Provider, requests: list[SendRequest]) -> list[DeliveryResult]:
    """Send ``requests`` in turn through ``provider``, then close it."""

    async def scenario() -> list[DeliveryResult]:
        try:
            return [await provider.send(request) for request in requests]
        finally:
            await provider.aclose()

    return asyncio.run(scenario())
