"""Local ports for tests that need "nothing is listening here"."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections for as long as the context lasts.

    The port is bound but never listened on, so connecting gets an immediate
    "connection refused", and no other test can grab it meanwhile (unlike
    picking a free port and closing it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on right now, for a server started next.

    The port is released before it is returned, so another program could take it in
    between; servers started from it should be checked for readiness, not assumed up.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
