"""Run wrk against one URL and read its ``--latency`` report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_LATENCY = r"([\d.]+)(us|ms|s|m|h)"


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds, duration in seconds.

    ``requests`` counts completed responses of any status; ``non_2xx`` those with a
    status of 400 or more (wrk's "Non-2xx or 3xx responses"); ``socket_errors``
    connect + read + write + timeout errors.
    """

    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def succeeded(self) -> int:
        """Responses with a 2xx/3xx status: the events the target accepted."""
        return self.requests - self.non_2xx

    @property
    def errors(self) -> int:
        """Non-2xx responses plus socket errors."""
        return self.non_2xx + self.socket_errors


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something this parser does not understand."""


def run_wrk(
    url: str,
    *,
    script: Path,
    script_args: list[str],
    duration_s: float,
    connections: int,
    threads: int,
) -> WrkResult:
    """Run ``wrk --latency`` with ``script`` against ``url`` and parse its report.

    Blocks for about ``duration_s`` seconds; gives up (killing wrk) after
    ``duration_s + 60`` seconds.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk not found on PATH (apt-get install -y wrk)")
    if not script.is_file():
        # wrk would only warn and fall back to plain GET requests.
        raise WrkError(f"wrk script not found: {script}")
    seconds = max(1, round(duration_s))
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        *script_args,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk_output(done.stdout)


def parse_wrk_output(text: str) -> WrkResult:
    """Parse the report wrk prints with ``--latency``; raise ``WrkError`` if it is not one."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+" + _LATENCY, text, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+" + _LATENCY, text, re.MULTILINE)
    if not (total and rate):
        raise WrkError(f"cannot read wrk output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=_to_ms(total.group(2), total.group(3)) / 1000.0,
        requests_per_s=float(rate.group(1)),
        # wrk prints no distribution when no request completed.
        p50_ms=_to_ms(p50.group(1), p50.group(2)) if p50 else float("nan"),
        p99_ms=_to_ms(p99.group(1), p99.group(2)) if p99 else float("nan"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]
