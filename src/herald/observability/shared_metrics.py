"""Metrics summed over the API processes of ``herald serve --workers N``.

Each process counts its own requests. Served as they were, a scrape of ``/metrics``
showed the process that happened to answer it: a counter jumped from one process's
figure to another's between scrapes, and Prometheus read every drop as a restart, so a
rate over it was meaningless. prometheus_client's multiprocess mode keeps each
process's counts in a file of a folder they share, and a scrape of any process sums
them all.

The mode is chosen when prometheus_client is first imported, from the variable below:
the server sets it before the API processes start, and they import it afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_shared_by(processes: int) -> Iterator[None]:
    """While it lasts, processes started from this one share their counts when there
    are several of them; the folder is removed at the end. The counts of a process that
    died and was replaced stay in it, so the sums never go back."""
    if processes == 1:
        count_alone()
        yield
        return
    _remove_folders_of_servers_gone()
    folder = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    os.environ[FOLDER_VARIABLE] = folder
    try:
        yield
    finally:
        os.environ.pop(FOLDER_VARIABLE, None)
        shutil.rmtree(folder, ignore_errors=True)


_PREFIX = "herald-metrics-"


def _remove_folders_of_servers_gone() -> None:
    """Remove the folders of servers killed outright (SIGKILL), which could not remove
    their own: each is named by its server's process id, and one whose process is gone
    is no one's. One whose id a process of another user now has is left: it cannot be
    told apart from one in use."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = folder.name.removeprefix(_PREFIX).split("-", 1)[0]
        if pid.isdigit() and folder.is_dir() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def count_alone() -> None:
    """This process counts on its own, whatever folder the caller's environment names:
    one left there would make it count into, and serve, the counts of other processes
    (another server's, another worker's). Called before prometheus_client is imported,
    which reads the variable then."""
    os.environ.pop(FOLDER_VARIABLE, None)


def shared_metrics_folder() -> str | None:
    """The folder where this process's counts join those of its fellow processes."""
    return os.environ.get(FOLDER_VARIABLE) or None


def without_shared_metrics(environment: Mapping[str, str]) -> dict[str, str]:
    """``environment`` for a process that counts apart (the dispatcher: its delivery
    metrics are served on a port of its own)."""
    return {name: value for name, value in environment.items() if name != FOLDER_VARIABLE}
