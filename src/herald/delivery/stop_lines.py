"""What a dispatcher says as it stops, ``herald worker`` (serve's dispatcher process
too) and an API process delivering inline alike: met with silence, an operator would
kill the process, and the sends it cut off would be made again later."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from herald.observability.operator_lines import say

if TYPE_CHECKING:
    from herald.config import WorkerSettings
    from herald.delivery.dispatcher import Dispatcher


def say_stopping(settings: WorkerSettings, *, ctrl_c_again_stops_at_once: bool) -> None:
    """The line said as the dispatcher starts no more sends, at most a lease before it
    stops. Only a worker's second Ctrl-C cuts that short: an API process delivering inline
    is stopped by uvicorn, which waits for the sends whatever it is sent next."""
    from herald.delivery.dispatcher import LEASE_S  # not at import: every command loads this

    again = "; Ctrl-C again stops at once" if ctrl_c_again_stops_at_once else ""
    say(
        settings,
        "stopping: the sends under way finish and are recorded first (within "
        f"{LEASE_S:.0f} s{again}); killed before, it leaves them to be sent again once "
        "their claims run out",
    )


def say_stopped(settings: WorkerSettings, dispatcher: Dispatcher) -> None:
    """The line said once the sends under way are recorded, or could not be: a clean
    stop and a process that vanished mid-round otherwise look alike in the log."""
    left = dispatcher.left_unrecorded
    if left:
        # Not "recorded": an operator would take the repeats that follow for a bug.
        say(
            settings,
            f"stopped: {left} message(s) under way could not be recorded, the database "
            "away until their claims ran out; they will be sent again",
            level=logging.WARNING,
        )
    else:
        say(settings, "stopped: the sends under way were recorded")
