"""Connections reused between sends: logged in once, replaced when the relay dropped them
while idle, closed once they carried their cap or idled too long, never sending twice."""

import asyncio
import time
from dataclasses import replace

import pytest

from herald.delivery.provider import DeliveryResult, DeliveryStatus, SendRequest
from herald.delivery.providers.smtp import SmtpProvider
from tests.support.processes import wait_for
from tests.support.smtp_sending import REQUEST, SENDER, send_all, trusting
from tests.support.smtp_sink import SmtpSink
from tests.support.tls import Certificate


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
