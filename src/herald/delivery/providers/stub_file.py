"""The stub provider's file (``outbox.jsonl``) shared by the processes that write it and
the erasure that rewrites it without a user's lines.

Both hold an exclusive ``flock`` on the file while they touch it. The erasure writes the
lines it keeps to a new file and renames it over the old one before letting go, so an
append that waited for the lock finds that the path names another file, and writes to
that one: appended to the old file, its line would be lost with it."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import orjson


def not_a_file(mode: int) -> str | None:
    """What a file of ``mode`` (``st_mode``) is when it is no regular file the stub can
    append to, as a problem says it; None for a regular file. Opened to write, a FIFO no
    one reads holds the process for good, and a device takes every line where no one
    reads it, each recorded as sent."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "it is a folder; name a file in it"
    kinds = (
        (stat.S_ISFIFO, "a FIFO (a named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((said for test, said in kinds if test(mode)), "no regular file")
    return f"it is {kind}, not a regular file; name a file"


def open_to_append(path: Path) -> int:
    """A descriptor appending to the regular file ``path``, created readable by its owner
    alone (it holds every recipient and message in full); ``OSError`` saying what it is
    when it is no regular file. Opened without waiting: a FIFO with no reader fails at
    once (ENXIO) rather than hold the dispatcher until one comes."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        raise OSError(exc.errno, not_a_file(stat.S_IFIFO), str(path)) from None
    problem = not_a_file(os.fstat(fd).st_mode)
    if problem is not None:
        os.close(fd)
        raise OSError(errno.EINVAL, problem, str(path))
    # O_NONBLOCK is nothing to a regular file's writes: left on.
    return fd


def open_to_read(path: Path) -> BinaryIO:
    """The regular file ``path``, opened to read; ``FileNotFoundError`` when there is
    none, and ``OSError`` saying what it is when it is no regular file. Opened without
    waiting: a FIFO opened to read waits for a writer, for good when none comes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    problem = not_a_file(os.fstat(fd).st_mode)
    if problem is not None:
        os.close(fd)
        raise OSError(errno.EINVAL, problem, str(path))
    return os.fdopen(fd, "rb")  # O_NONBLOCK is nothing to a regular file's reads


def identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file ``path`` names now, or None when there is none."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return None
    return named.st_dev, named.st_ino


@contextmanager
def locked(file: BinaryIO) -> Iterator[None]:
    """Hold the file's exclusive lock (shared with every process that opens it)."""
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def erase_user(path: Path, user_id: str, *, dry_run: bool = False) -> int:
    """Remove the lines of ``user_id``'s sends from the stub's file at ``path``; how many
    there were (0 without a file). ``dry_run``: count them, changing nothing. A line that
    is not a JSON object, which the stub never writes, is kept."""
    while True:
        try:
            file = open_to_read(path)  # held through the rename below
        except FileNotFoundError:
            return 0
        with file, locked(file):
            opened = os.fstat(file.fileno())
            if identity(path) != (opened.st_dev, opened.st_ino):
                continue  # rewritten by another erasure meanwhile: read the new file
            if dry_run:
                return sum(1 for line in file if _of_user(line, user_id))
            return _rewrite_without(file, path, user_id)


def _rewrite_without(file: BinaryIO, path: Path, user_id: str) -> int:
    """Write ``file``'s lines but ``user_id``'s beside ``path``, and rename the result over
    it when any were left out; the caller holds the lock."""
    # A new file of a name no one can guess (mkstemp: created, never found, readable by
    # its owner alone): the folder may be one others write to, and a name they could
    # foresee (``.outbox.jsonl.<pid>.erasing``) let them plant a link there, through
    # which the rewrite filled another file, or a file of theirs that became the outbox.
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".erasing", dir=path.parent)
    temporary = Path(name)
    removed = 0
    with os.fdopen(descriptor, "wb") as kept:
        for line in file:
            if _of_user(line, user_id):
                removed += 1
            else:
                kept.write(line)
        kept.flush()
        os.fsync(kept.fileno())
    if removed:
        os.replace(temporary, path)
    else:
        temporary.unlink()
    return removed


def _of_user(line: bytes, user_id: str) -> bool:
    try:
        sent = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(sent, dict) and sent.get("user_id") == user_id
