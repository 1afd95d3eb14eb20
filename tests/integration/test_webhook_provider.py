"""WebhookProvider against a real HTTP server on 127.0.0.1."""

import asyncio
import dataclasses
import json
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from herald import __version__
from herald.delivery.provider import DeliveryResult, DeliveryStatus, SendRequest
from herald.delivery.providers.signing import verify
from herald.delivery.providers.webhook import WebhookProvider
from herald.delivery.setup import build_delivery
from herald.observability.logging import configure_logging
from tests.support.http_receiver import CannedResponse, HttpReceiver
from tests.support.ports import refused_port
from tests.support.tls import Certificate, private_ca_certificate

SECRET = b"whsec_integration"
SIGNED_AT = 1_718_000_000

REQUEST = SendRequest(
    message_id="msg-0001",
    channel="webhook",
    recipient="https://partner.example/hooks",
    rule="order-shipped",
    dedup_key="order-42:shipped",
    user_id="user-7",
    event_id="evt-99",
    subject="Your order shipped",
    body="Order 42 is on its way — ça arrive.",
    html="<p>Order 42 is on its way</p>",
    category="transactional",
)
REQUEST2 = dataclasses.replace(REQUEST, message_id="msg-0002")


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as running:
        yield running


def send_once(url: str, request: SendRequest = REQUEST, **options: object) -> DeliveryResult:
    """Build a provider, send one request, close the provider."""

    async def scenario() -> DeliveryResult:
        provider = WebhookProvider(name="partner", url=url, **options)  # type: ignore[arg-type]
        try:
            return await provider.send(request)
        finally:
            await provider.aclose()

    return asyncio.run(scenario())


def test_the_receiver_gets_every_field_of_the_message_as_json(receiver: HttpReceiver) -> None:
    send_once(receiver.url, secret=None)

    [received] = receiver.requests
    assert received.method == "POST"
    assert received.path == "/hook"
    assert received.headers["content-type"] == "application/json"
    assert received.json() == REQUEST.as_json()


def test_the_signature_verifies_against_the_exact_body_received(receiver: HttpReceiver) -> None:
    send_once(receiver.url, secret=SECRET, clock=lambda: SIGNED_AT + 0.9)

    [received] = receiver.requests
    header = received.headers["herald-signature"]
    assert header.startswith(f"t={SIGNED_AT},v1=")
    assert verify(SECRET, header, received.body, now=SIGNED_AT) is True
    assert verify(b"wrong secret", header, received.body, now=SIGNED_AT) is False


def test_no_signature_is_sent_without_a_secret(receiver: HttpReceiver) -> None:
    send_once(receiver.url, secret=None)

    assert "herald-signature" not in receiver.requests[0].headers


def test_the_user_agent_names_herald_and_its_version(receiver: HttpReceiver) -> None:
    send_once(receiver.url, secret=None)

    assert receiver.requests[0].headers["user-agent"] == f"herald/{__version__}"


def test_extra_headers_are_sent_but_do_not_replace_herald_headers(
    receiver: HttpReceiver,
) -> None:
    send_once(
        receiver.url,
        secret=None,
        headers={"Authorization": "Bearer abc", "Idempotency-Key": "mine"},
    )

    headers = receiver.requests[0].headers
    assert headers["authorization"] == "Bearer abc"
    assert headers["idempotency-key"] == REQUEST.message_id


def test_retries_carry_the_message_id_as_the_same_idempotency_key(
    receiver: HttpReceiver,
) -> None:
    receiver.respond_with(CannedResponse(503, b"busy"), CannedResponse(200))

    async def scenario() -> list[DeliveryResult]:
        provider = WebhookProvider(name="partner", url=receiver.url, secret=SECRET)
        try:
            return [await provider.send(REQUEST), await provider.send(REQUEST)]
        finally:
            await provider.aclose()

    results = asyncio.run(scenario())

    assert [r.status for r in results] == [DeliveryStatus.RETRY, DeliveryStatus.SENT]
    keys = [request.headers["idempotency-key"] for request in receiver.requests]
    assert keys == [REQUEST.message_id, REQUEST.message_id]


def test_a_2xx_answer_is_sent_with_the_receivers_id_as_reference(
    receiver: HttpReceiver,
) -> None:
    receiver.respond_with(CannedResponse(201, b'{"id": "rcv-123", "ok": true}'))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.SENT
    assert result.provider_reference == "rcv-123"
    assert result.detail == "HTTP 201"


def test_a_2xx_answer_without_a_json_id_has_no_reference(receiver: HttpReceiver) -> None:
    receiver.respond_with(CannedResponse(200, b"thanks", {"Content-Type": "text/plain"}))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.SENT
    assert result.provider_reference is None


def test_a_2xx_answer_nested_past_any_parser_is_still_sent(receiver: HttpReceiver) -> None:
    receiver.respond_with(CannedResponse(200, b"[" * 100_000 + b"]" * 100_000))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.SENT  # accepted: sending again would duplicate
    assert result.provider_reference is None


def test_a_503_is_retried_and_the_detail_quotes_the_answer(receiver: HttpReceiver) -> None:
    receiver.respond_with(CannedResponse(503, b"upstream\n  down", {"Retry-After": "30"}))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail == "HTTP 503: upstream down (Retry-After: 30)"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_timeouts_throttling_and_server_errors_are_retried(
    receiver: HttpReceiver, status: int
) -> None:
    receiver.respond_with(CannedResponse(status, b""))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail == f"HTTP {status}"


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
def test_other_client_errors_and_redirects_fail_for_good(
    receiver: HttpReceiver, status: int
) -> None:
    receiver.respond_with(CannedResponse(status, b'{"error": "bad payload"}'))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail == f'HTTP {status}: {{"error": "bad payload"}}'


def test_a_redirect_names_the_origin_it_points_to_and_not_its_path(
    receiver: HttpReceiver,
) -> None:
    # "HTTP 301" alone left the operator to find out where the receiver had moved; its
    # path is left out, as a hook's path often holds its token.
    moved = "https://hooks.example.com:8443/T01/B02/token-abc?key=k"
    receiver.respond_with(CannedResponse(301, b"", {"Location": moved}))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail == (
        "HTTP 301 (redirects to https://hooks.example.com:8443/..., not followed: point the "
        "rule file's url at the receiver's new address)"
    )


def test_a_redirect_to_another_path_of_the_same_receiver_says_so(
    receiver: HttpReceiver,
) -> None:
    receiver.respond_with(CannedResponse(308, b"moved", {"Location": "/v2/hook"}))

    result = send_once(receiver.url, secret=None)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail == (
        f"HTTP 308: moved (redirects to another path of http://127.0.0.1:{receiver.port}, "
        "not followed: point the rule file's url at the receiver's new address)"
    )


def test_the_detail_quotes_at_most_200_characters_of_the_answer(receiver: HttpReceiver) -> None:
    receiver.respond_with(CannedResponse(500, b"x" * 5_000))

    result = send_once(receiver.url, secret=None)

    assert result.detail == "HTTP 500: " + "x" * 200


def test_a_port_with_nothing_listening_is_retried() -> None:
    with refused_port() as port:
        result = send_once(f"http://127.0.0.1:{port}/hook", secret=None)

    assert result.status is DeliveryStatus.RETRY
    # aiohttp's words named TLS settings (`ssl:default`) for a plain http:// URL.
    assert result.detail == f"connection failed: cannot connect to 127.0.0.1:{port}: " + (
        "Connection refused"
    )


def test_a_host_name_that_does_not_resolve_is_said_so() -> None:
    result = send_once("http://herald-no-such-host.invalid/hook", secret=None)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail.startswith(
        "connection failed: cannot connect to herald-no-such-host.invalid:80: cannot resolve "
        "the host name ("
    ), result.detail


def test_a_server_slower_than_the_timeout_is_retried(receiver: HttpReceiver) -> None:
    receiver.respond_with(CannedResponse(200, delay=10.0))
    started = time.monotonic()

    result = send_once(receiver.url, secret=None, timeout=0.2)

    assert time.monotonic() - started < 2.0
    assert result.status is DeliveryStatus.RETRY
    assert result.detail.startswith("timeout after 0.2 s")
    assert len(receiver.requests) == 1  # it did arrive; the answer was too late


def test_a_url_that_is_not_http_fails_for_good_without_repeating_it() -> None:
    # The detail is logged and shown by the audit; a hook's URL often holds its token.
    result = send_once("ftp://127.0.0.1/hooks/s3cr3tT0ken", secret=None)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail.startswith("the webhook URL is not usable")
    assert "s3cr3tT0ken" not in result.detail


@pytest.fixture
def garbled_receiver() -> Iterator[int]:
    """A port whose server answers every request with a status line HTTP cannot read."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_an_error_quoting_the_url_as_the_client_rewrote_it_leaves_its_token_out(
    garbled_receiver: int,
) -> None:
    """The HTTP client quotes the URL in its own spelling (an escape's hex in capitals, a
    default port left out, the scheme in lower case): only the URL as written was taken
    out of the detail, which the audit shows and the log says, so the token went there."""
    result = send_once(f"http://127.0.0.1:{garbled_receiver}/hooks/s3cr3t%2fT0ken", secret=None)

    assert result.status is DeliveryStatus.RETRY
    assert "Bad status line" in result.detail
    assert "s3cr3t" not in result.detail
    assert f"http://127.0.0.1:{garbled_receiver}" in result.detail


@pytest.fixture
def receiver_dropping_kept_connections() -> Iterator[tuple[int, list[str]]]:
    """A port whose server answers the first request of each connection, keeps it open,
    and closes it unanswered at the next one, as a receiver does that drops a connection
    idle for longer than it keeps them just as a request comes; and what it was sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[str] = []

    def serve(connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as stream:
            for answered in (True, False):
                head = b"".join(iter(stream.readline, b"\r\n"))
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                received.append(json.loads(stream.read(length))["message_id"])
                if answered:
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], received
    finally:
        listener.close()


def test_a_kept_connection_the_receiver_dropped_is_replaced_within_the_send(
    receiver_dropping_kept_connections: tuple[int, list[str]],
) -> None:
    """Sent on a kept connection the receiver had just closed, the next message failed,
    "connection error", using an attempt (a dead letter with ``max_attempts: 1``) though
    it could go at once on a new connection, as an email does."""
    port, received = receiver_dropping_kept_connections

    async def scenario() -> list[DeliveryResult]:
        provider = WebhookProvider("partner", f"http://127.0.0.1:{port}/hook", secret=None)
        try:
            return [await provider.send(REQUEST), await provider.send(REQUEST2)]
        finally:
            await provider.aclose()

    results = asyncio.run(scenario())

    assert [result.status for result in results] == [DeliveryStatus.SENT] * 2
    assert received == ["msg-0001", "msg-0002", "msg-0002"]


def test_a_sent_message_leaves_the_webhook_url_out_of_the_log(
    receiver: HttpReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    # As the server logs: the HTTP client's own line for each request would print the URL.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("INFO", "text")
    try:
        result = send_once(f"{receiver.url}/T01/B02/s3cr3tT0ken", secret=None)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

    assert result.status is DeliveryStatus.SENT
    assert receiver.requests[0].path == "/hook/T01/B02/s3cr3tT0ken"
    assert "s3cr3tT0ken" not in capsys.readouterr().err


def test_closing_the_provider_leaves_a_shared_session_open(receiver: HttpReceiver) -> None:
    async def scenario() -> tuple[bool, DeliveryResult]:
        async with aiohttp.ClientSession() as session:
            provider = WebhookProvider(
                name="partner", url=receiver.url, secret=None, session=session
            )
            await provider.aclose()
            return session.closed, await provider.send(REQUEST)

    closed, result = asyncio.run(scenario())

    assert closed is False
    assert result.status is DeliveryStatus.SENT


def test_closing_the_provider_twice_is_harmless(receiver: HttpReceiver) -> None:
    async def scenario() -> None:
        provider = WebhookProvider(name="partner", url=receiver.url, secret=None)
        await provider.send(REQUEST)
        await provider.aclose()
        await provider.aclose()

    asyncio.run(scenario())


def test_a_2xx_answer_whose_body_stalls_is_sent(receiver: HttpReceiver) -> None:
    # The receiver has said 200: it has the message. Sending it again would duplicate it.
    receiver.respond_with(CannedResponse(200, b'{"id": "rcv-1"}', body_delay=10.0))
    started = time.monotonic()

    result = send_once(receiver.url, secret=None, timeout=0.3)

    assert time.monotonic() - started < 2.0
    assert result.status is DeliveryStatus.SENT
    assert result.detail.startswith("HTTP 200")


def test_a_huge_answer_is_not_read_whole(receiver: HttpReceiver) -> None:
    huge = b"x" * (64 * 1024 * 1024)
    receiver.respond_with(CannedResponse(200, huge, {"Content-Type": "text/plain"}))
    tracemalloc.start()
    try:
        result = send_once(receiver.url, secret=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.status is DeliveryStatus.SENT
    assert peak < 8 * 1024 * 1024  # bytes held at once; the answer was 64 MiB


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return private_ca_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_receiver(private_ca: Certificate) -> Iterator[HttpReceiver]:
    with HttpReceiver(tls_context=private_ca.server_context()) as running:
        yield running


def send_from_the_rule_file(spec: dict[str, object], folder: Path) -> DeliveryResult:
    """Build the sms provider from ``spec`` as the rule file has it, and send one request."""
    plan = build_delivery({"providers": {"sms": spec}}, outbox=folder / "o.jsonl", env={})

    async def scenario() -> DeliveryResult:
        provider = plan.providers["sms"]
        try:
            return await provider.send(REQUEST)
        finally:
            await provider.aclose()

    return asyncio.run(scenario())


def test_a_receiver_behind_a_private_ca_is_a_tls_error_to_retry_without_its_ca_file(
    https_receiver: HttpReceiver, tmp_path: Path
) -> None:
    result = send_from_the_rule_file({"type": "webhook", "url": https_receiver.url}, tmp_path)

    assert result.status is DeliveryStatus.RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail
    assert https_receiver.requests == []


def test_a_receiver_behind_a_private_ca_gets_the_message_with_its_ca_file(
    https_receiver: HttpReceiver, private_ca: Certificate, tmp_path: Path
) -> None:
    spec = {"type": "webhook", "url": https_receiver.url, "ca_file": str(private_ca.ca_file)}

    result = send_from_the_rule_file(spec, tmp_path)

    assert result.status is DeliveryStatus.SENT
    [received] = https_receiver.requests
    assert received.json() == REQUEST.as_json()


def test_the_proxy_of_the_environment_carries_the_request(
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that reaches the internet only through a proxy says so in HTTP_PROXY.
    monkeypatch.setenv("HTTP_PROXY", receiver.url.rsplit("/", 1)[0])
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    result = send_once("http://partner.invalid/hooks", secret=None)

    assert result.status is DeliveryStatus.SENT
    [received] = receiver.requests
    assert received.path == "http://partner.invalid/hooks"


def test_a_host_in_no_proxy_is_reached_directly(
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("no_proxy", raising=False)
    with refused_port() as port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = send_once(receiver.url, secret=None)
        monkeypatch.delenv("NO_PROXY")
        through_the_proxy = send_once(receiver.url, secret=None)

    assert direct.status is DeliveryStatus.SENT
    assert through_the_proxy.status is DeliveryStatus.RETRY  # the proxy refuses
    assert len(receiver.requests) == 1
