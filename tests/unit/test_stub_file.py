"""The stub provider's file rewritten without a forgotten user's sends, while a
dispatcher may be appending to it: no line of another user is lost."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from herald.delivery.provider import DeliveryStatus, SendRequest
from herald.delivery.providers.stub import StubProvider
from herald.delivery.providers.stub_file import erase_user, locked


def _request(user: str, n: int = 1) -> SendRequest:
    return SendRequest(
        message_id=f"msg_{user}_{n}",
        channel="email",
        recipient=f"{user}@example.com",
        rule="WELCOME_EMAIL",
        dedup_key=f"WELCOME_EMAIL:{user}",
        user_id=user,
        event_id=f"e_{user}",
        subject="Welcome",
        body=f"Hi {user}",
    )


def _users(path: Path) -> list[str]:
    return [json.loads(line)["user_id"] for line in path.read_text().splitlines()]


def test_erasing_a_user_keeps_every_other_line_and_a_dry_run_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.jsonl"
    stub = StubProvider(path)
    for user in ("ana", "bo", "ana"):
        asyncio.run(stub.send(_request(user)))

    assert erase_user(path, "ana", dry_run=True) == 2
    assert _users(path) == ["ana", "bo", "ana"]
    assert erase_user(path, "ana") == 2
    assert _users(path) == ["bo"]
    assert os.stat(path).st_mode & 0o777 == 0o600  # it holds recipients in full
    assert erase_user(path, "ana") == 0
    assert erase_user(tmp_path / "none.jsonl", "ana") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.jsonl"]

    asyncio.run(stub.send(_request("cy")))  # the stub goes on in the rewritten file
    assert _users(path) == ["bo", "cy"]


def test_a_send_waiting_for_the_rewrite_is_written_to_the_new_file_not_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.jsonl"
    stub = StubProvider(path)
    asyncio.run(stub.send(_request("ana")))
    sending = threading.Thread(target=lambda: asyncio.run(stub.send(_request("bo"))))

    # An erasure holding the lock while it renames the rewritten file in.
    with open(path, "rb") as old, locked(old):
        sending.start()
        time.sleep(0.2)  # the send waits for the lock
        rewritten = tmp_path / ".rewritten"
        rewritten.write_bytes(b"")
        os.replace(rewritten, path)
    sending.join(5)

    assert _users(path) == ["bo"]


def test_a_file_planted_at_a_guessable_name_beside_the_outbox_is_left_alone(
    tmp_path: Path,
) -> None:
    """The outbox may sit in a folder others can write to (the working folder, with
    PostgreSQL). A name made of the process id alone could be taken in advance: a link
    there had the rewrite truncate and fill the file it points to, and a file another
    user made readable by all became the outbox, recipients and texts in it."""
    path = tmp_path / "outbox.jsonl"
    stub = StubProvider(path)
    for user in ("ana", "bo"):
        asyncio.run(stub.send(_request(user)))
    victim = tmp_path / "victim.txt"
    victim.write_text("not the outbox's\n")
    planted = tmp_path / f".outbox.jsonl.{os.getpid()}.erasing"
    planted.symlink_to(victim)

    assert erase_user(path, "ana") == 1

    assert victim.read_text() == "not the outbox's\n"
    assert _users(path) == ["bo"]
    planted.unlink()
    readable = tmp_path / f".outbox.jsonl.{os.getpid()}.erasing"
    readable.write_text("")
    readable.chmod(0o644)

    assert erase_user(path, "bo") == 1

    assert os.stat(path).st_mode & 0o777 == 0o600
    assert path.read_text() == ""


@contextmanager
def _disk_full_past(size: int) -> Iterator[None]:
    """This process can write no file past ``size`` bytes, as on a full disk: a write
    there fails (EFBIG rather than ENOSPC), after writing what fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else it kills the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, ignored)


def test_a_send_that_failed_on_a_full_disk_leaves_no_line_behind(tmp_path: Path) -> None:
    """A line the disk had no room for stayed in the file's buffer, and went out with the
    next send: once its retry was written too, the message was in the outbox twice, and
    a process stopped before then left half a line."""
    path = tmp_path / "outbox.jsonl"
    stub = StubProvider(path)
    asyncio.run(stub.send(_request("ana")))

    with _disk_full_past(path.stat().st_size + 10):
        refused = asyncio.run(stub.send(_request("bo")))
    assert refused.status is DeliveryStatus.RETRY
    assert _users(path) == ["ana"]

    assert asyncio.run(stub.send(_request("bo"))).status is DeliveryStatus.SENT
    assert asyncio.run(stub.send(_request("cy"))).status is DeliveryStatus.SENT
    assert _users(path) == ["ana", "bo", "cy"]


def test_a_send_to_a_path_swapped_for_a_fifo_is_retried_not_left_hanging(tmp_path: Path) -> None:
    """Opened as a file, a FIFO with no reader held the dispatcher's loop for good: every
    channel's sends stopped, not only the stub's."""
    path = tmp_path / "outbox.jsonl"
    stub = StubProvider(path)
    asyncio.run(stub.send(_request("ana")))
    path.unlink()
    os.mkfifo(path)

    outcome: list[DeliveryStatus] = []
    sender = threading.Thread(
        target=lambda: outcome.append(asyncio.run(stub.send(_request("bo"))).status), daemon=True
    )
    sender.start()
    sender.join(timeout=5)

    assert outcome == [DeliveryStatus.RETRY]


def test_erasing_a_user_from_a_fifo_says_what_it_is_rather_than_wait(tmp_path: Path) -> None:
    """Opened to read, a FIFO no one writes held `herald users forget`, or the forget
    route's request, for good."""
    path = tmp_path / "outbox.jsonl"
    os.mkfifo(path)

    raised: list[OSError] = []

    def erase() -> None:
        try:
            erase_user(path, "ana")
        except OSError as exc:
            raised.append(exc)

    eraser = threading.Thread(target=erase, daemon=True)
    eraser.start()
    eraser.join(timeout=5)

    assert [exc.strerror for exc in raised] == [
        "it is a FIFO (a named pipe), not a regular file; name a file"
    ]
