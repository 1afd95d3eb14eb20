"""The email a message becomes: its headers and its text and HTML parts, in the 7-bit
encodings every SMTP relay takes. Sending it is ``smtp.py``'s."""

from __future__ import annotations

from datetime import datetime
from email import policy
from email.header import Header
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, formataddr, parseaddr, quote

import idna

from herald.delivery.provider import SendRequest
from herald.domain.recipients import email_problem

# Text beyond ASCII goes quoted-printable or base64, never as 8-bit data: ``smtplib`` does
# not declare ``BODY=8BITMIME`` for it (RFC 6152), and a relay not told may refuse the
# message or strip each byte's top bit.
_SEVEN_BIT = policy.default.clone(cte_type="7bit")


def build_message(
    request: SendRequest, *, sender: str, reply_to: str | None, date: datetime
) -> EmailMessage:
    """The email for ``request``: text body, plus an HTML alternative when ``request.html``.

    Raises ``ValueError`` for headers the email package cannot encode, and for a
    recipient that is not one plain address (the envelope and the ``To`` header would
    each read it their own way).
    """
    problem = email_problem(request.recipient)
    if problem is not None:
        raise ValueError(f"the recipient is not one plain address ({problem})")
    message = EmailMessage(policy=_SEVEN_BIT)
    message["From"] = _address_header("From", sender)
    message["To"] = ascii_domain(request.recipient)
    if reply_to:
        message["Reply-To"] = _address_header("Reply-To", reply_to)
    # Rendered templates often end with a newline, which a header cannot hold.
    subject = " ".join(request.subject.split())
    message["Subject"] = subject if subject.isascii() else EncodedHeader("Subject", subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{request.message_id}@{_id_domain(sender)}>"
    message["X-Herald-Message-Id"] = request.message_id
    # RFC 3834: tells vacation responders not to answer an automated message.
    message["Auto-Submitted"] = "auto-generated"
    if request.unsubscribe_url:
        # RFC 2369's link, and RFC 8058's word that a POST to it unsubscribes at once,
        # which large mailbox providers require of marketing email to show their button.
        message["List-Unsubscribe"] = UnfoldedHeader(
            "List-Unsubscribe", f"<{request.unsubscribe_url}>"
        )
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(request.body)
    if request.html:
        message.add_alternative(request.html, subtype="html")
    return message


class _WrittenHeader(str):
    """A header Herald writes itself: a value with a ``name`` is a header object to the
    email package, which writes it with its ``fold``; read back, it is the text itself."""

    name: str

    def __new__(cls, name: str, text: str) -> _WrittenHeader:
        header = super().__new__(cls, text)
        header.name = name
        return header


class EncodedHeader(_WrittenHeader):
    """A header beyond ASCII, written as encoded words (RFC 2047) that hold its spaces.

    The email package's own folding (before Python 3.13) put the space at a fold between
    two encoded words, where a reader drops it (RFC 2047, 6.2): a long subject reached its
    reader with two words run together wherever a fold fell on a space (``12,50 €`` read
    ``12,50€``)."""

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {_encoded_words(self.name, self, policy.linesep)}{policy.linesep}"


class UnfoldedHeader(_WrittenHeader):
    """An ASCII header written on one line as it is. Left to the email package, a value
    longer than a line without a space to fold at (a link) was written as encoded words
    (``=?utf-8?q?=3Chttps...``), which no mail client reads as a URL. A line may hold
    998 characters (RFC 5322, 2.1.1): the link's token is at most about 730."""

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


class EncodedAddress(str):
    """An address header whose display name is beyond ASCII, the name written as encoded
    words that hold its spaces, as ``EncodedHeader`` writes a subject: the email package's
    folding lost a space of a long name as it did a subject's. Read back, it is the address
    with its name quoted, as ``smtplib`` reads the envelope sender from it."""

    name: str
    display_name: str
    address: str

    def __new__(cls, name: str, display_name: str, address: str) -> EncodedAddress:
        header = super().__new__(cls, f'"{quote(display_name)}" <{address}>')
        header.name, header.display_name, header.address = name, display_name, address
        return header

    def fold(self, *, policy: Policy) -> str:
        linesep = policy.linesep
        encoded = _encoded_words(self.name, self.display_name, linesep)
        # The address on a line of its own when the last one has no room for it: a line of
        # a header should not be over 78 characters (RFC 5322, 2.1.1).
        folded = f"{self.name}: {encoded}"
        last_line = folded.rpartition(linesep)[2]
        gap = " " if len(last_line) + len(self.address) + 3 <= _LINE_LENGTH else f"{linesep} "
        return f"{folded}{gap}<{self.address}>{linesep}"


_LINE_LENGTH = 78


def _encoded_words(name: str, text: str, linesep: str) -> str:
    """``text`` as the value of the header ``name``: UTF-8 encoded words, folded by
    ``email.header.Header``, which keeps each space inside a word."""
    return Header(str(text), "utf-8", header_name=name).encode(linesep=linesep)


def _address_header(name: str, value: str) -> str:
    """The rule file's ``sender`` or ``reply_to`` as the header ``name``: its domain in
    ASCII (see ``ascii_sender``), and a display name beyond ASCII as encoded words that
    hold its spaces (see ``EncodedAddress``)."""
    display_name, address = parseaddr(value)
    if display_name.isascii():
        return ascii_sender(value)
    return EncodedAddress(name, display_name, ascii_domain(address))


def _id_domain(sender: str) -> str:
    """The right side of a Message-ID: the sender's domain, in ASCII. Spam filters and
    milters take one without a dot (``<id@herald>``) for a malformed id, the mark
    of badly written mail software; the sender's domain is the one the id belongs to, and
    it stays the same on every attempt, so a relay can still drop a repeat by it."""
    domain = parseaddr(ascii_sender(sender))[1].rpartition("@")[2]
    return domain if domain.isascii() and "." in domain else "herald.invalid"


def ascii_sender(value: str) -> str:
    """The rule file's ``sender`` or ``reply_to`` (an address, with or without a display
    name) with the address's domain in ASCII (see ``ascii_domain``). As it was, a domain
    beyond ASCII went out as an encoded word in the header, an address no reply reaches,
    and in the envelope of every email, which a relay without SMTPUTF8 refuses."""
    name, address = parseaddr(value)
    ascii_address = ascii_domain(address)
    if ascii_address == address:
        return value
    return formataddr((name, ascii_address)) if name else ascii_address


def ascii_domain(address: str) -> str:
    """``address`` with its domain in ASCII (IDNA, the form DNS knows it by) when the rest
    is ASCII: many relays do not offer SMTPUTF8, which ``smtplib`` needs for any address
    beyond ASCII, and would refuse ``ada@bücher.example`` though ``ada@xn--bcher-kva.example``
    is the same mailbox. A local part beyond ASCII has no such form and stays as it is."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii() or not local.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except UnicodeError:  # idna.IDNAError among them: not a domain IDNA can write
        return address
