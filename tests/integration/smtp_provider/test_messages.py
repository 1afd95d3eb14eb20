"""What reaches the relay: the message's headers, envelope and parts, and addresses beyond
ASCII or that are not one plain address."""

from dataclasses import replace
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr

from herald.delivery.provider import DeliveryStatus
from tests.support.smtp_sending import REQUEST, SENDER, send_once
from tests.support.smtp_sink import SmtpSink

TEXT_ONLY = replace(REQUEST, message_id="msg-0002", subject="Plain", body="Just text.", html=None)


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
    assert message["Message-ID"] == "<msg-0001@herald.test>"
    assert message["X-Herald-Message-Id"] == "msg-0001"
    assert message["Date"] is not None


def test_the_message_id_is_on_the_sender_s_domain_in_its_ascii_form(sink: SmtpSink) -> None:
    """``<msg-0003@herald>`` has no dot on its right: spam filters and milters read that as
    a malformed Message-ID, sent by badly written mail software."""
    request = replace(REQUEST, message_id="msg-0003")
    send_once(sink.port, request=request, sender="Équipe <hello@bücher.example>")

    assert only_message(sink)["Message-ID"] == "<msg-0003@xn--bcher-kva.example>"


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


def test_a_long_subject_beyond_ascii_keeps_every_space_between_its_words(sink: SmtpSink) -> None:
    """Folded into encoded words (RFC 2047), a space at a fold went between two of them,
    where a reader drops it (6.2): ``12,50 €`` read ``12,50€``."""
    subject = (
        "Bom dia Conceição, o seu pagamento de 12,50 € foi recusado por saldo insuficiente "
        "no cartão terminado em 4242 — atualize o cartão na sua área de cliente"
    )

    send_once(sink.port, request=replace(REQUEST, subject=subject))

    [received] = sink.messages
    assert received.content.isascii()
    assert received.message["Subject"] == subject
    assert all(len(line) <= 78 for line in received.content.split(b"\r\n"))


def test_a_message_without_html_is_plain_text(sink: SmtpSink) -> None:
    send_once(sink.port, request=TEXT_ONLY)

    message = only_message(sink)
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Just text."


def test_an_accepted_message_is_sent_with_its_message_id_as_reference(sink: SmtpSink) -> None:
    result = send_once(sink.port)

    assert result.status is DeliveryStatus.SENT
    assert result.provider_reference == "<msg-0001@herald.test>"


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


def display_name_as_read(header: str) -> str:
    """The display name of an address header as it came, decoded as RFC 2047 (6.2) says a
    reader does: the space that folds a line between two encoded words is no part of the
    text. (The email package's address parser keeps it, so it is not the reader here.)"""
    return str(make_header(decode_header(parseaddr(header)[0])))


def test_a_long_display_name_beyond_ascii_keeps_every_space_between_its_words(
    sink: SmtpSink,
) -> None:
    """As a long subject's: folded into encoded words, a space at a fold went between two
    of them, where a reader drops it: ``Société Noël`` read ``SociétéNoël``."""
    name = "Pâtisserie Müller et Söhne — Société Noël des clients, Genève"

    result = send_once(
        sink.port, sender=f'"{name}" <noreply@herald.test>', reply_to=f'"{name}" <help@herald.test>'
    )

    assert result.status is DeliveryStatus.SENT, result.detail
    [received] = sink.messages
    assert received.content.isascii()
    assert received.mail_from == "noreply@herald.test"
    headers = message_from_bytes(received.content)  # each header as it came
    assert display_name_as_read(headers["From"]) == name
    assert display_name_as_read(headers["Reply-To"]) == name
    assert received.message["From"].addresses[0].addr_spec == "noreply@herald.test"
    assert received.message["Reply-To"].addresses[0].addr_spec == "help@herald.test"
    assert all(len(line) <= 78 for line in received.content.split(b"\r\n"))


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
