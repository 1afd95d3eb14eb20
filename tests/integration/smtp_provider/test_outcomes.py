"""How a send's outcome is classified: the relay's replies and refusals, a server not
listening or not greeting, logging in, and a send cut off by its caller."""

import asyncio
import socket
import threading
from pathlib import Path

import pytest

from herald.delivery.provider import DeliveryResult, DeliveryStatus
from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.setup import build_delivery
from tests.support.ports import refused_port
from tests.support.processes import wait_for
from tests.support.smtp_sending import REQUEST, SENDER, send_all, send_once
from tests.support.smtp_sink import SmtpSink


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


def test_a_host_no_dns_name_can_be_fails_for_good_without_raising() -> None:
    # Made without the rule file's check: the send raised UnicodeError (from the name's
    # IDNA encoding), logged with a traceback and retried until the message was a dead letter.
    host = "a" * 64 + ".example"

    async def scenario() -> DeliveryResult:
        provider = SmtpProvider(name="mail", host=host, port=25, sender=SENDER)
        try:
            return await provider.send(REQUEST)
        finally:
            await provider.aclose()

    result = asyncio.run(scenario())

    assert result.status is DeliveryStatus.FAILED
    assert result.detail.startswith(f"SMTP server {host}:25: the host cannot be a DNS name (")


def test_a_server_that_never_greets_is_retried_after_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody ever speaks
        result = send_once(silent.getsockname()[1], timeout=0.2)

    assert result.status is DeliveryStatus.RETRY
    assert result.detail.startswith("timeout after 0.2 s")


def test_credentials_are_used_to_log_in() -> None:
    with SmtpSink(credentials=("herald", "s3cret")) as sink:
        result = send_once(sink.port, username="herald", password="s3cret")

        assert result.status is DeliveryStatus.SENT
        assert sink.logins == ["herald"]
        assert len(sink.messages) == 1


def test_wrong_credentials_fail_for_good_saying_the_login_was_refused() -> None:
    # The relay's own words alone (`SMTP 535: 5.7.8 Authentication credentials invalid`)
    # did not say that it was the login, not the message, that was refused.
    with SmtpSink(credentials=("herald", "s3cret")) as sink:
        result = send_once(sink.port, username="herald", password="guess")

        assert result.status is DeliveryStatus.FAILED
        assert result.detail == (
            "the relay refused the login (check the user name and password): "
            "SMTP 535: 5.7.8 Authentication credentials invalid"
        )
        assert sink.messages == []


def test_a_refused_login_names_the_variables_of_the_rule_file_not_their_values(
    tmp_path: Path,
) -> None:
    spec = {"type": "smtp", "host": "127.0.0.1", "sender": SENDER}
    spec.update(username_env="RELAY_USER", password_env="RELAY_PASSWORD")
    env = {"RELAY_USER": "herald", "RELAY_PASSWORD": "guess-Xq7"}
    with SmtpSink(credentials=("herald", "s3cret")) as sink:
        spec["port"] = sink.port
        plan = build_delivery({"providers": {"email": spec}}, outbox=tmp_path / "o.jsonl", env=env)

        [result] = send_all(plan.providers["email"], [REQUEST])

    assert result.status is DeliveryStatus.FAILED
    assert result.detail.startswith(
        "the relay refused the login (check the user name and password in RELAY_USER and "
        "RELAY_PASSWORD): SMTP 535"
    )
    assert "guess-Xq7" not in result.detail


def test_a_login_the_relay_cannot_take_for_now_is_retried() -> None:
    with SmtpSink(credentials=("herald", "s3cret")) as sink:
        sink.auth_reply = "454 4.7.0 Temporary authentication failure"
        result = send_once(sink.port, username="herald", password="s3cret")

        assert result.status is DeliveryStatus.RETRY
        assert result.detail == (
            "the relay cannot take the login for now: "
            "SMTP 454: 4.7.0 Temporary authentication failure"
        )
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


def test_a_password_beyond_ascii_fails_without_quoting_it() -> None:
    # The login cannot send it: the send raised, and each attempt was retried with an
    # audit quoting the password's first such character and its position.
    with SmtpSink(credentials=("herald", "pässwort")) as sink:
        result = send_once(sink.port, username="herald", password="pässwort")

        assert result.status is DeliveryStatus.FAILED
        assert result.detail == (
            f"SMTP server 127.0.0.1:{sink.port}: the user name or password has characters "
            "beyond ASCII, which an SMTP login cannot send"
        )
        assert sink.messages == []
