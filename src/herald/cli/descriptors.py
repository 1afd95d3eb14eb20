"""Whether an API process may open as many files as the connections it keeps need: each
connection holds a file descriptor, and a process past its limit (``ulimit -n``) can
open neither a connection nor a database file, so the cap of connections
(``--max-connections``) must fit under it with the process's own files beside it."""

from __future__ import annotations

import resource

from herald.cli.output import fail
from herald.config import Settings
from herald.observability.operator_lines import say

# The descriptors an API process holds beside its clients' connections: about 20 in
# one that has served a few requests (the interpreter's, the event loop's, the outbox
# file, the shared metrics' files), and as many more as its database pool's 16
# connections take at most (with SQLite, each one's file, journal and shared memory) and,
# delivering inline, the 16 sends each channel has at once: some 120 in all, doubled.
OWN_DESCRIPTORS = 256


def make_room_for_connections(settings: Settings) -> None:
    """Raise this process's limit of open files (its API processes inherit it) to what
    ``settings.max_connections`` needs, within the hard limit; exit 1 in one line if the
    hard limit is lower."""
    needed = settings.max_connections + OWN_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        fail(
            f"HERALD_MAX_CONNECTIONS (--max-connections) is {settings.max_connections:,}: "
            f"with the {OWN_DESCRIPTORS} files an API process keeps open itself, that is "
            f"{needed:,} open files, and this process may open at most {hard:,} (`ulimit "
            f"-Hn`); keep fewer connections, or raise the limit (systemd: LimitNOFILE=)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    say(
        settings,
        f"open files limit raised from {soft:,} to {needed:,}: {settings.max_connections:,} "
        f"connections (HERALD_MAX_CONNECTIONS) and {OWN_DESCRIPTORS} of the process's own",
    )
