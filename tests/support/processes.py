"""Herald out of process, for end-to-end tests: the real ``herald`` command line in
subprocesses, each writing to its own log file, and always stopped.

Usage::

    env = herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl"))
    api = HeraldProcess("api", log_dir=tmp_path)
    try:
        api.start(["serve", "--port", str(port), "--database", url], env=env, cwd=tmp_path)
        api.wait_healthy(f"http://127.0.0.1:{port}/readyz")
        ...
    finally:
        api.stop()

PostgreSQL tests that need a database of their own (empty, or shared by several
processes) take one from ``scratch_postgres_database``; ``connections_refused`` makes it
unavailable for a while.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# How long a test waits for a process to start: to answer, to print its start-up line, to
# start the processes it runs, or to refuse to start. A second or two on an idle machine,
# many times that while the whole suite shares two cores; every wait on a process fails at
# once when the process exits, so a limit this generous costs time only on a real hang.
START_TIMEOUT_S = 60.0


def herald_command() -> list[str]:
    """The ``herald`` script of the running virtualenv (``python -m herald`` without one)."""
    script = Path(sys.executable).with_name("herald")
    return [str(script)] if script.exists() else [sys.executable, "-m", "herald"]


def herald_environment(**variables: str) -> dict[str, str]:
    """This process's environment without its ``HERALD_*`` settings, plus ``variables``.

    Wide columns keep the CLI's messages on one line, so tests can search them.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("HERALD_")}
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1", NO_COLOR="1")
    env.update(variables)
    return env


def run_herald(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = START_TIMEOUT_S,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot ``herald`` command to its end; stdout and stderr are captured.
    ``prefix``: a command that runs it (e.g. ``without_file_powers()``)."""
    return subprocess.run(
        [*prefix, *herald_command(), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def without_file_powers() -> list[str]:
    """A command prefix under which file permissions hold: root ignores them unless it
    gives up the capabilities that override them (util-linux's setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    dropped = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={dropped}", f"--inh-caps={dropped}"]


class HeraldProcess:
    """One long-running ``herald`` process (``serve`` or ``worker``) with its log in
    ``log_dir/<name>.log``. ``stop`` ends it and anything it started."""

    def __init__(self, name: str, *, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        command: Sequence[str] | None = None,
    ) -> HeraldProcess:
        """Run ``herald args`` (or ``command args``, e.g. ``make run``)."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started")
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [*(command or herald_command()), *args],
            env=dict(env) if env is not None else herald_environment(),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group, so that stop() also reaches the workers it forks.
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        """Everything the process has written so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_healthy(self, url: str, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until ``GET url`` answers 200; fail at once, with the log, if the process ends."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive(f"while waiting for {url}")
            try:
                response = httpx.get(url, timeout=1.0)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise TimeoutError(
            f"{self.name}: {url} not healthy after {timeout}s ({last})\n{self._tail()}"
        )

    def wait_for_output(self, needle: str, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the process has written ``needle`` (e.g. a startup line)."""
        self.wait_until(lambda: needle in self.output(), f"{needle!r} in its output", timeout)

    def wait_until(
        self, check: Callable[[], Any], what: str, timeout: float = START_TIMEOUT_S
    ) -> Any:
        """``check``'s first true value, asked every 100 ms while the process runs (e.g.
        that the processes it starts are up); fail at once, with the log, if it ends, and
        after ``timeout`` seconds naming ``what``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            self._check_alive(f"while waiting for {what}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {what}: not within {timeout}s\n{self._tail()}")

    def wait(self, timeout: float) -> int:
        """Wait for the process to end by itself; its exit code."""
        assert self._process is not None, f"{self.name} was never started"
        return self._process.wait(timeout)

    def terminate(self) -> None:
        """Ask the process to shut down (SIGTERM), without waiting."""
        if self.running:
            assert self._process is not None
            self._process.terminate()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL to its process group after ``timeout``; its exit code."""
        process = self._process
        if process is None:
            return None
        self.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        # Whatever is left of its group (a killed uvicorn's workers, say) goes too.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> HeraldProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _check_alive(self, doing: str) -> None:
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        code = self._process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code} {doing}\n{self._tail()}")

    def _tail(self) -> str:
        tail = self.output().splitlines()[-40:]
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(tail)


def stop_all(processes: Iterable[HeraldProcess]) -> None:
    """Stop processes together: all get SIGTERM first, so their shutdowns overlap."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop()


@contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url`` (any database there the
    user may connect to), dropped afterwards even if processes still hold connections."""
    name = f"herald_scratch_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def connections_refused(admin_url: str, url: str) -> Iterator[None]:
    """The database of ``url`` refuses every connection, those open included, for as long
    as the context lasts (as in the outage an operator would cause with ALTER DATABASE)."""
    name = make_url(url).database
    admin = create_engine(
        admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        connection.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.dispose()


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    """``predicate``'s first true value, asked every 50 ms; fails naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")
