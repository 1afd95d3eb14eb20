"""The dispatcher of ``herald serve`` in a child process: started with the server,
restarted if it dies, stopped with it.

Delivery on the server's own event loop competes with ingestion for one core; as a
child process it runs on another (see the benchmark in the README). The child is
``herald worker``, reading the same ``HERALD_*`` environment. It runs in a session of its
own, so a Ctrl-C at the terminal reaches only the server, which then stops it; and it
watches its parent, so it ends too when the server is killed outright.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from herald.delivery.dispatcher import LEASE_S
from herald.observability.shared_metrics import without_shared_metrics

log = logging.getLogger("herald.dispatcher")

# A child that lived this long before dying is restarted after the first, shortest pause,
# not the longer one that the quick deaths before it had built up.
_HEALTHY_RUN_S = 60.0


class DispatcherProcess:
    def __init__(
        self,
        *,
        command: list[str] | None = None,
        restart_after_s: float = 1.0,
        max_restart_after_s: float = 30.0,
        stop_timeout_s: float = LEASE_S + 10.0,
    ) -> None:
        """``stop_timeout_s``: how long a stopping child may take before it is killed. It
        outlasts a claim's lease, within which a round's sends and its recording end:
        killed in mid-round, the child would leave sends made but not recorded, and they
        would be made again."""
        self._command = command or [
            sys.executable,
            "-m",
            "herald",
            "worker",
            "--parent-pid",
            str(os.getpid()),
        ]
        self._restart_after_s = restart_after_s
        self._max_restart_after_s = max_restart_after_s
        self._stop_timeout_s = stop_timeout_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no child is started once stopping is set
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(
            target=self._supervise, name="herald-dispatcher-supervisor", daemon=True
        )

    def __enter__(self) -> DispatcherProcess:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask the child to finish its round (SIGTERM); kill it if it takes too long."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.error("the dispatcher process did not stop in time; killing it")
                process.kill()
                process.wait()
        self._thread.join(self._stop_timeout_s)

    def _supervise(self) -> None:
        backoff = self._restart_after_s
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                started = time.monotonic()
                failure = self._start()
            if failure is None:
                assert self._process is not None
                failure = _how_it_ended(self._process.wait())
            if self._stopping.is_set():
                return
            if time.monotonic() - started > _HEALTHY_RUN_S:
                backoff = self._restart_after_s
            log.error("the dispatcher process %s; starting another in %g s", failure, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_restart_after_s)

    def _start(self) -> str | None:
        """Start the child; what went wrong if it could not be (no process, too many
        open files): tried again like a child that died, not the end of delivery."""
        try:
            self._process = subprocess.Popen(
                self._command, start_new_session=True, env=without_shared_metrics(os.environ)
            )
        except OSError as exc:
            self._process = None
            return f"could not be started ({exc})"
        return None


def _how_it_ended(returncode: int) -> str:
    """A child's end as the operator would say it: ``Popen`` gives a signal that killed it
    as a negative code, and "exited with code -9" reads as an exit code no process has."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"
