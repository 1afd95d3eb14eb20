"""TLS: implicit TLS and STARTTLS, certificates trusted or not, handshakes failed or cut
off, and a provider from the rule file trusting its CA file."""

import asyncio
import gc
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.delivery.provider import DeliveryStatus
from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.setup import build_delivery
from tests.support.processes import wait_for
from tests.support.smtp_sending import REQUEST, SENDER, send_all, send_once, trusting
from tests.support.smtp_sink import SmtpSink
from tests.support.tls import Certificate


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


def test_starttls_with_a_relay_that_does_not_offer_it_sends_nothing_in_clear(
    certificate: Certificate,
) -> None:
    """One on the path that strips STARTTLS from the relay's EHLO answer must not get the
    message, or the password, in clear text: the send fails, nothing is sent."""
    with SmtpSink(credentials=("herald", "s3cret")) as sink:  # offers AUTH, not STARTTLS
        result = send_once(
            sink.port,
            tls="starttls",
            tls_context=trusting(certificate),
            username="herald",
            password="s3cret",
        )

        assert result.status is DeliveryStatus.FAILED
        assert "STARTTLS" in result.detail
        assert sink.logins == [] and sink.messages == []


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


def test_a_relay_offering_no_login_before_starttls_says_to_use_it(
    certificate: Certificate,
) -> None:
    # smtplib's words alone, "SMTP AUTH extension not supported by server", did not say
    # that the relay offers it once the connection is upgraded.
    with SmtpSink(
        credentials=("herald", "s3cret"),
        tls="starttls",
        tls_context=certificate.server_context(),
        auth_after_starttls=True,
    ) as sink:
        result = send_once(sink.port, username="herald", password="s3cret")

        assert result.status is DeliveryStatus.FAILED
        assert result.detail == (
            f"SMTP server 127.0.0.1:{sink.port}: the relay offers no login on this "
            "connection (without TLS: try `tls: starttls`, as many relays offer it only then)"
        )
        assert sink.messages == []


def test_a_relay_offering_login_after_starttls_takes_it_there(certificate: Certificate) -> None:
    with SmtpSink(
        credentials=("herald", "s3cret"),
        tls="starttls",
        tls_context=certificate.server_context(),
        auth_after_starttls=True,
    ) as sink:
        result = send_once(
            sink.port,
            tls="starttls",
            tls_context=trusting(certificate),
            username="herald",
            password="s3cret",
        )

        assert result.status is DeliveryStatus.SENT
        assert sink.logins == ["herald"]
