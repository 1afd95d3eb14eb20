"""SmtpProvider against a real aiosmtpd server on 127.0.0.1."""

import asyncio
import gc
import shutil
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest

from herald.delivery.provider import DeliveryResult, DeliveryStatus, Provider, SendRequest
from herald.delivery.setup import build_delivery
from herald.delivery.smtp import SmtpProvider
from tests.support.ports import refused_port
from tests.support.processes import wait_for
from tests.support.smtp_sink import SmtpSink
from tests.support.tls import Certificate, self_signed_certificate

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
TEXT_ONLY = replace(REQUEST, message_id="msg-0002", subject="Plain", body="Just text.", html=None)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


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


def only_message(sink: SmtpSink) -> EmailMessage:
    [received] = sink.messages
    return received.message


def test_the_server_receives_the_addressing_headers(sink: SmtpSink) -> None:
    send_once(sink.port, reply_to="support@herald.test")

    message = only_message(sink)
    assert message["From"] == SENDER
    assert message["To"] == "ada@example.com"
    assert message["Reply-To"] == "support@herald.test"
    assert message["Subject"] == "Welcome to Herald, Ada"  # the trailing newline is folded away
    assert message["Message-ID"] == "<msg-0001@herald>"
    assert message["X-Herald-Message-Id"] == "msg-0001"
    assert message["Date"] is not None


def test_there_is_no_reply_to_unless_configured(sink: SmtpSink) -> None:
    send_once(sink.port)

    assert only_message(sink)["Reply-To"] is None


def test_the_envelope_goes_from_the_sender_address_to_the_recipient(sink: SmtpSink) -> None:
    send_once(sink.port)

    [received] = sink.messages
    assert received.mail_from == "noreply@herald.test"
    assert received.rcpt_tos == ["ada@example.com"]


def test_html_arrives_as_an_alternative_to_the_text(sink: SmtpSink) -> None:
    send_once(sink.port)

    message = only_message(sink)
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == "Hello Ada — welcome aboard."
    assert html.get_content().strip() == "<p>Hello <b>Ada</b> — welcome aboard.</p>"


def test_text_beyond_ascii_reaches_the_relay_in_7_bit_as_no_body_8bitmime_is_declared(
    sink: SmtpSink,
) -> None:
    """A relay that was not told BODY=8BITMIME (RFC 6152) may refuse 8-bit data or strip
    its top bit: the text and the HTML travel encoded, and read back as they were."""
    send_once(sink.port, request=replace(REQUEST, subject="Olá, Ada — bem-vinda"))

    [received] = sink.messages
    assert received.content.isascii()
    message = received.message
    assert message["Subject"] == "Olá, Ada — bem-vinda"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().splitlines() == ["Hello Ada — welcome aboard."]
    assert html.get_content().splitlines() == ["<p>Hello <b>Ada</b> — welcome aboard.</p>"]


def test_a_message_without_html_is_plain_text(sink: SmtpSink) -> None:
    send_once(sink.port, request=TEXT_ONLY)

    message = only_message(sink)
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Just text."


def test_an_accepted_message_is_sent_with_its_message_id_as_reference(sink: SmtpSink) -> None:
    result = send_once(sink.port)

    assert result.status is DeliveryStatus.SENT
    assert result.provider_reference == "<msg-0001@herald>"


@pytest.mark.parametrize(
    ("code", "text"), [("451", "4.3.0 try later"), ("452", "4.2.2 mailbox full")]
)
def test_a_temporary_refusal_of_the_recipient_is_retried(
    sink: SmtpSink, code: str, text: str
) -> None:
    sink.rcpt_reply = f"{code} {text}"

    result = send_once(sink.port)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail == f"ada@example.com refused: SMTP {code}: {text}"
    assert sink.messages == []


@pytest.mark.parametrize("reply", ["421 4.4.2 closing", "500 5.5.1 bye"])
def test_a_message_the_server_accepted_is_sent_whatever_it_answers_to_quit(
    sink: SmtpSink, reply: str
) -> None:
    # Once DATA got its 250 the message is the relay's: retrying it would deliver it
    # again, and dead-lettering it would tell the operator it was never sent.
    sink.quit_reply = reply

    result = send_once(sink.port, messages_per_connection=1)  # QUIT after this message

    assert result.status is DeliveryStatus.SENT
    assert len(sink.messages) == 1


def test_a_send_cut_off_while_the_relay_closes_the_session_is_sent(sink: SmtpSink) -> None:
    # The relay has the message once DATA got its 250: cut off during QUIT, the send was
    # reported unanswered, and the dispatcher's retry delivered it a second time.
    sink.quit_delay = 2.0

    async def cut_off() -> DeliveryResult:
        provider = SmtpProvider(
            name="mail",
            host="127.0.0.1",
            port=sink.port,
            sender=SENDER,
            messages_per_connection=1,  # QUIT after this message
        )
        async with asyncio.timeout(0.5):
            return await provider.send(REQUEST)

    result = asyncio.run(cut_off())

    assert result.status is DeliveryStatus.SENT
    assert len(sink.messages) == 1


def test_an_unknown_recipient_fails_for_good(sink: SmtpSink) -> None:
    sink.rcpt_reply = "550 5.1.1 no such user"

    result = send_once(sink.port)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail == "ada@example.com refused: SMTP 550: 5.1.1 no such user"


def test_a_temporary_refusal_of_the_content_is_retried(sink: SmtpSink) -> None:
    sink.data_reply = "451 4.7.1 greylisted"

    result = send_once(sink.port)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail == "SMTP 451: 4.7.1 greylisted"


def test_rejected_content_fails_for_good(sink: SmtpSink) -> None:
    sink.data_reply = "554 5.7.1 looks like spam"

    result = send_once(sink.port)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail == "SMTP 554: 5.7.1 looks like spam"


def test_a_server_that_is_not_listening_is_retried() -> None:
    with refused_port() as port:
        result = send_once(port)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail.startswith(f"cannot connect to 127.0.0.1:{port}")


def test_a_server_that_never_greets_is_retried_after_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody ever speaks
        result = send_once(silent.getsockname()[1], timeout=0.2)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail.startswith("timeout after 0.2 s")


def test_a_recipient_with_a_line_break_fails_without_sending(sink: SmtpSink) -> None:
    request = replace(REQUEST, recipient="ada@example.com\nBcc: all@example.com")

    result = send_once(sink.port, request=request)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail.startswith("cannot build email")
    assert sink.messages == []


def test_a_recipient_at_an_international_domain_reaches_a_relay_without_smtputf8() -> None:
    """A relay that does not offer SMTPUTF8 (many do not) takes a domain in its ASCII
    form (IDNA): the address is the same one, and only a local part beyond ASCII needs
    the extension."""
    with SmtpSink(smtputf8=False) as ascii_only:
        result = send_once(ascii_only.port, replace(REQUEST, recipient="jürgen@straße.de"))
        assert result.status is DeliveryStatus.FAILED  # no ASCII form of this local part
        assert "SMTPUTF8" in result.detail

        result = send_once(ascii_only.port, replace(REQUEST, recipient="ada@bücher.example"))

        assert result.status is DeliveryStatus.SENT
        [received] = ascii_only.messages
    assert received.rcpt_tos == ["ada@xn--bcher-kva.example"]
    assert received.message["To"] == "ada@xn--bcher-kva.example"


def test_a_sender_and_reply_to_at_an_international_domain_go_in_their_ascii_form() -> None:
    """As the recipient's: the envelope of every email carried the sender's domain beyond
    ASCII, which a relay without SMTPUTF8 refused (every email a dead letter), and the
    Reply-To header an encoded word in its domain, an address no reply could reach."""
    with SmtpSink(smtputf8=False) as ascii_only:
        result = send_once(
            ascii_only.port,
            sender="Hérald <hello@bücher.example>",
            reply_to="hilfe@bücher.example",
        )

        assert result.status is DeliveryStatus.SENT, result.detail
        [received] = ascii_only.messages
    assert received.mail_from == "hello@xn--bcher-kva.example"
    assert received.message["From"].addresses[0].addr_spec == "hello@xn--bcher-kva.example"
    assert received.message["From"].addresses[0].display_name == "Hérald"
    assert received.message["Reply-To"] == "hilfe@xn--bcher-kva.example"


def test_an_international_address_goes_as_it_is_to_a_relay_with_smtputf8(
    sink: SmtpSink,
) -> None:
    send_once(sink.port, replace(REQUEST, recipient="jürgen@straße.de"))

    [received] = sink.messages
    assert received.rcpt_tos == ["jürgen@straße.de"]


def test_a_recipient_that_is_not_one_plain_address_fails_without_sending(sink: SmtpSink) -> None:
    # The envelope would go to ada alone while the To header named eve too. The engine
    # no longer decides such a message; one already in the outbox is refused here.
    request = replace(REQUEST, recipient="ada@example.com, eve@evil.test")

    result = send_once(sink.port, request=request)

    assert result.status is DeliveryStatus.FAILED
    assert result.detail == (
        "cannot build email: the recipient is not one plain address (has a comma: one address only)"
    )
    assert sink.messages == []


def test_credentials_are_used_to_log_in() -> None:
    with SmtpSink(credentials=("herald", "s3cret")) as sink:
        result = send_once(sink.port, username="herald", password="s3cret")

        assert result.status is DeliveryStatus.SENT
        assert sink.logins == ["herald"]
        assert len(sink.messages) == 1


def test_wrong_credentials_fail_for_good() -> None:
    with SmtpSink(credentials=("herald", "s3cret")) as sink:
        result = send_once(sink.port, username="herald", password="guess")

        assert result.status is DeliveryStatus.FAILED
        assert result.detail.startswith("SMTP 535")
        assert sink.messages == []


def test_sending_without_logging_in_to_a_server_that_requires_it_fails() -> None:
    with SmtpSink(credentials=("herald", "s3cret")) as sink:
        result = send_once(sink.port)

        assert result.status is DeliveryStatus.FAILED
        assert result.detail.startswith("SMTP 530")


def test_starttls_against_a_server_without_it_fails_for_good(sink: SmtpSink) -> None:
    result = send_once(sink.port, tls="starttls")

    assert result.status is DeliveryStatus.FAILED
    assert "STARTTLS" in result.detail


@pytest.mark.parametrize(
    ("greeting", "status"),
    [("421 4.3.2 too busy", DeliveryStatus.RETRY), ("554 5.3.2 no service", DeliveryStatus.FAILED)],
)
def test_a_server_that_refuses_to_talk_is_classified_by_its_greeting(
    greeting: str, status: DeliveryStatus
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def greet_and_hang_up() -> None:
            connection, _ = server.accept()
            with connection:
                connection.sendall(f"{greeting}\r\n".encode())

        greeter = threading.Thread(target=greet_and_hang_up)
        greeter.start()
        result = send_once(server.getsockname()[1], timeout=2)
        greeter.join()

    assert result.status is status
    assert result.detail == f"SMTP {greeting[:3]}: {greeting[4:]}"


def test_a_send_cut_off_by_its_caller_ends_its_connection(sink: SmtpSink) -> None:
    sink.rcpt_delay = 1.0

    async def cut_off() -> None:
        provider = SmtpProvider(name="mail", host="127.0.0.1", port=sink.port, sender=SENDER)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await provider.send(REQUEST)

    asyncio.run(cut_off())  # waits for the sending thread to end
    wait_for(lambda: sink.mail_sessions_ended == 1, "the connection to be closed")

    assert sink.messages == []  # and, closed, it can bring none


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def trusting(certificate: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate.cert_file)


@pytest.fixture
def smtps_sink(certificate: Certificate) -> Iterator[SmtpSink]:
    with SmtpSink(tls="implicit", tls_context=certificate.server_context()) as running:
        yield running


def test_implicit_tls_speaks_tls_from_the_first_byte(
    smtps_sink: SmtpSink, certificate: Certificate
) -> None:
    result = send_once(smtps_sink.port, tls="implicit", tls_context=trusting(certificate))

    assert result.status is DeliveryStatus.SENT
    [received] = smtps_sink.messages
    assert received.tls and received.rcpt_tos == ["ada@example.com"]


def test_implicit_tls_logs_in_inside_the_tls_connection(certificate: Certificate) -> None:
    context = certificate.server_context()
    with SmtpSink(credentials=("herald", "s3cret"), tls="implicit", tls_context=context) as sink:
        result = send_once(
            sink.port,
            tls="implicit",
            tls_context=trusting(certificate),
            username="herald",
            password="s3cret",
        )

        assert result.status is DeliveryStatus.SENT
        assert sink.logins == ["herald"] and sink.messages[0].tls


def test_starttls_upgrades_before_sending(certificate: Certificate) -> None:
    with SmtpSink(tls="starttls", tls_context=certificate.server_context()) as sink:
        result = send_once(sink.port, tls="starttls", tls_context=trusting(certificate))

        assert result.status is DeliveryStatus.SENT
        assert sink.messages[0].tls


def test_implicit_tls_with_an_untrusted_certificate_sends_nothing(smtps_sink: SmtpSink) -> None:
    result = send_once(smtps_sink.port, tls="implicit")  # the system's trust store

    assert result.status is DeliveryStatus.RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail
    assert smtps_sink.messages == []


def test_a_connection_whose_tls_handshake_failed_is_closed_by_the_provider(
    smtps_sink: SmtpSink,
) -> None:
    # Not left to the garbage collector: a relay whose certificate is not trusted is tried
    # at every retry, and each attempt would hold its socket open until collected.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        result = send_once(smtps_sink.port, tls="implicit")  # the system's trust store
        wait_for(lambda: not send_threads(), "the send thread to end")
        gc.collect()

    assert "CERTIFICATE_VERIFY_FAILED" in result.detail
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def send_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("herald-smtp")]


def test_plain_smtp_against_an_implicit_tls_port_times_out(smtps_sink: SmtpSink) -> None:
    # What `tls: implicit` is for: the server waits for a TLS hello, the client for a greeting.
    result = send_once(smtps_sink.port, timeout=0.3)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail.startswith("timeout after 0.3 s")


def cut_off_after(seconds: float, port: int, **options: object) -> float:
    """Send with ``options``, cut the send off after ``seconds``; how long it all took,
    until the sending thread ended too."""

    async def cut_off() -> None:
        provider = SmtpProvider(
            name="mail",
            host="127.0.0.1",
            port=port,
            sender=SENDER,
            **options,  # type: ignore[arg-type]
        )
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(seconds):
                    await provider.send(REQUEST)
        finally:
            await provider.aclose()

    started = time.monotonic()
    asyncio.run(cut_off())  # waits for the sending thread to end
    return time.monotonic() - started


def test_an_implicit_tls_send_cut_off_by_its_caller_ends_its_connection(
    smtps_sink: SmtpSink, certificate: Certificate
) -> None:
    smtps_sink.rcpt_delay = 1.0

    cut_off_after(0.3, smtps_sink.port, tls="implicit", tls_context=trusting(certificate))
    wait_for(lambda: smtps_sink.mail_sessions_ended == 1, "the connection to be closed")

    assert smtps_sink.messages == []  # and, closed, it can bring none


def test_a_tls_handshake_cut_off_by_its_caller_ends_at_once(certificate: Certificate) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts the connection, never answers the TLS hello
        port = silent.getsockname()[1]

        took = cut_off_after(
            0.3, port, tls="implicit", tls_context=trusting(certificate), timeout=10
        )

    assert took < 2.0  # not the 10 s socket timeout


def test_a_provider_from_the_rule_file_trusts_its_ca_file(
    smtps_sink: SmtpSink, certificate: Certificate, tmp_path: Path
) -> None:
    spec = {"type": "smtp", "host": "127.0.0.1", "port": smtps_sink.port, "sender": SENDER}
    spec.update(tls="implicit", ca_file=str(certificate.cert_file))
    plan = build_delivery({"providers": {"email": spec}}, outbox=tmp_path / "o.jsonl", env={})

    [result] = send_all(plan.providers["email"], [REQUEST])

    assert result.status is DeliveryStatus.SENT
    assert smtps_sink.messages[0].tls


def test_a_relative_ca_file_is_found_beside_the_rule_file_wherever_herald_runs(
    smtps_sink: SmtpSink,
    certificate: Certificate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Like `templates_dir`: a file that `herald rules check` passes in its own folder must
    # not break when the server is started from another one (a service manager's `/`).
    from herald.bootstrap import load_rules_and_delivery
    from herald.rules.loader import default_rules_path

    folder = tmp_path / "config"
    shutil.copytree(default_rules_path().parent / "templates", folder / "templates")
    shutil.copy(certificate.cert_file, folder / "relay.pem")
    rules = folder / "rules.yaml"
    rules.write_text(
        default_rules_path().read_text(encoding="utf-8")
        + "providers:\n"
        + f"  email: {{type: smtp, host: 127.0.0.1, port: {smtps_sink.port}, tls: implicit,\n"
        + "          ca_file: relay.pem, sender: noreply@herald.test}\n",
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    _, plan = load_rules_and_delivery(rules, outbox=tmp_path / "o.jsonl", env={})
    [result] = send_all(plan.providers["email"], [REQUEST])

    assert result.status is DeliveryStatus.SENT


def numbered(n: int) -> SendRequest:
    return replace(REQUEST, message_id=f"msg-{n:04}")


def received_ids(sink: SmtpSink) -> list[str]:
    return [received.message["X-Herald-Message-Id"] for received in sink.messages]


def provider_for(sink: SmtpSink, **options: object) -> SmtpProvider:
    return SmtpProvider(
        name="mail",
        host="127.0.0.1",
        port=sink.port,
        **{"sender": SENDER, **options},  # type: ignore[arg-type]
    )


def send_all(provider: Provider, requests: list[SendRequest]) -> list[DeliveryResult]:
    """Send ``requests`` in turn through ``provider``, then close it."""

    async def scenario() -> list[DeliveryResult]:
        try:
            return [await provider.send(request) for request in requests]
        finally:
            await provider.aclose()

    return asyncio.run(scenario())


def test_messages_share_connections_logged_in_once_each(certificate: Certificate) -> None:
    """Twenty messages, four at a time, over STARTTLS with a login: each connection's
    handshake and login serve many messages instead of one."""
    context = certificate.server_context()
    with SmtpSink(credentials=("herald", "s3cret"), tls="starttls", tls_context=context) as sink:
        provider = provider_for(
            sink,
            tls="starttls",
            tls_context=trusting(certificate),
            username="herald",
            password="s3cret",
        )

        async def four_at_a_time() -> list[DeliveryResult]:
            results: list[DeliveryResult] = []
            try:
                for first in range(0, 20, 4):
                    sends = (provider.send(numbered(n)) for n in range(first, first + 4))
                    results += await asyncio.gather(*sends)
            finally:
                await provider.aclose()
            return results

        results = asyncio.run(four_at_a_time())

        assert [result.status for result in results] == [DeliveryStatus.SENT] * 20
        assert sorted(received_ids(sink)) == [f"msg-{n:04}" for n in range(20)]
        assert all(received.tls for received in sink.messages)
        assert sink.connections <= 4
        assert len(sink.logins) == sink.connections


def test_messages_in_turn_go_over_one_connection_closed_by_aclose(sink: SmtpSink) -> None:
    results = send_all(provider_for(sink), [numbered(n) for n in range(5)])

    assert [result.status for result in results] == [DeliveryStatus.SENT] * 5
    assert received_ids(sink) == [f"msg-{n:04}" for n in range(5)]
    assert sink.connections == 1
    assert sink.quits == 1  # aclose waited for the relay's goodbye


@pytest.mark.parametrize("tls", ["none", "starttls"])
@pytest.mark.parametrize("goodbye", [None, "421 4.4.2 idle too long"])
def test_a_connection_the_relay_closed_while_idle_is_replaced_within_the_send(
    certificate: Certificate, tls: str, goodbye: str | None
) -> None:
    """Relays close idle connections, with or without a 421: the next message goes on a
    new connection, once, and is neither lost nor reported as a failure."""
    if tls == "none":
        sink, options = SmtpSink(), {}
    else:
        sink = SmtpSink(tls="starttls", tls_context=certificate.server_context())
        options = {"tls": "starttls", "tls_context": trusting(certificate)}
    with sink:
        provider = provider_for(sink, **options)

        async def scenario() -> list[DeliveryResult]:
            try:
                first = await provider.send(numbered(1))
                sink.hang_up(goodbye)
                if tls == "none":
                    wait_for(lambda: sink.mail_sessions_ended == 1, "the connection to close")
                else:  # ends only once the client answers the relay's TLS close_notify
                    await asyncio.sleep(0.2)
                return [first, await provider.send(numbered(2))]
            finally:
                await provider.aclose()

        results = asyncio.run(scenario())

        assert [result.status for result in results] == [DeliveryStatus.SENT] * 2
        assert received_ids(sink) == ["msg-0001", "msg-0002"]
        assert sink.connections == 2


def test_a_reused_connection_lost_after_mail_was_accepted_is_not_tried_again(
    sink: SmtpSink,
) -> None:
    """Past MAIL the relay was alive, and a message may be on its way: the send reports
    the lost connection for a later retry, as on a new connection, and sends nothing more."""
    provider = provider_for(sink)

    async def scenario() -> DeliveryResult:
        try:
            assert (await provider.send(numbered(1))).status is DeliveryStatus.SENT
            sink.rcpt_delay = 1.0
            second = asyncio.create_task(provider.send(numbered(2)))
            await asyncio.sleep(0.3)  # MAIL accepted, RCPT unanswered
            sink.hang_up()
            return await second
        finally:
            await provider.aclose()

    second = asyncio.run(scenario())

    assert second.status is DeliveryStatus.RETRY
    assert second.detail.startswith(f"SMTP server 127.0.0.1:{sink.port} disconnected")
    assert received_ids(sink) == ["msg-0001"]
    assert sink.connections == 1


def test_a_connection_whose_message_was_refused_is_not_reused(sink: SmtpSink) -> None:
    provider = provider_for(sink)

    async def scenario() -> list[DeliveryResult]:
        try:
            first = await provider.send(numbered(1))
            sink.rcpt_reply = "550 5.1.1 no such user"
            refused = await provider.send(numbered(2))
            sink.rcpt_reply = None
            return [first, refused, await provider.send(numbered(3))]
        finally:
            await provider.aclose()

    first, refused, third = asyncio.run(scenario())

    assert (first.status, third.status) == (DeliveryStatus.SENT, DeliveryStatus.SENT)
    assert refused.status is DeliveryStatus.FAILED
    assert refused.detail == "ada@example.com refused: SMTP 550: 5.1.1 no such user"
    assert received_ids(sink) == ["msg-0001", "msg-0003"]
    assert sink.connections == 2


def test_a_send_cut_off_on_a_reused_connection_ends_that_connection(sink: SmtpSink) -> None:
    provider = provider_for(sink)

    async def scenario() -> DeliveryResult:
        try:
            assert (await provider.send(numbered(1))).status is DeliveryStatus.SENT
            sink.rcpt_delay = 1.0
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await provider.send(numbered(2))
            wait_for(lambda: sink.mail_sessions_ended == 1, "the connection to be closed")
            sink.rcpt_delay = 0.0
            return await provider.send(numbered(3))
        finally:
            await provider.aclose()

    third = asyncio.run(scenario())
    time.sleep(1.0)  # the cut-off RCPT's answer is due now

    assert third.status is DeliveryStatus.SENT
    assert received_ids(sink) == ["msg-0001", "msg-0003"]  # never the cut-off one
    assert sink.connections == 2


def test_a_connection_carries_no_more_messages_than_its_cap(sink: SmtpSink) -> None:
    results = send_all(
        provider_for(sink, messages_per_connection=3), [numbered(n) for n in range(7)]
    )

    assert [result.status for result in results] == [DeliveryStatus.SENT] * 7
    assert len(sink.messages) == 7
    assert sink.connections == 3  # 3 + 3 + 1
    assert sink.quits == 3  # two at their cap, the last one by aclose


def test_a_connection_idle_for_too_long_is_closed_instead_of_reused(sink: SmtpSink) -> None:
    provider = provider_for(sink, idle_seconds=0.2)

    async def scenario() -> list[DeliveryResult]:
        try:
            first = await provider.send(numbered(1))
            await asyncio.sleep(0.4)
            return [first, await provider.send(numbered(2))]
        finally:
            await provider.aclose()

    results = asyncio.run(scenario())

    assert [result.status for result in results] == [DeliveryStatus.SENT] * 2
    assert sink.connections == 2
    assert sink.quits == 2  # the one idle for too long politely, the other by aclose
