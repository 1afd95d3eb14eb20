"""Machine description, the summary table and the JSON results file.

Everything here works on the plain results dict ``run.py`` builds, whose shape is
documented in README.md; rates are per second, latencies in milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """Describe the machine: CPUs usable by this process, CPU model, memory, versions."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "mem_total_gb": _mem_total_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": _wrk_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _wrk_version() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "missing"
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` to ``path`` (creating its folder), NaN written as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_nan_to_none(results), indent=2) + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


# The figures of stages 1 and 2, and how each orders the rounds.
_ROUND_FIGURES: dict[str, Callable[[Any], float]] = {
    "bare": lambda r: r["requests_per_s"],
    "herald_single": lambda r: r["requests_per_s"],
    "herald_over_bare": lambda ratio: ratio,
    "herald_batch": lambda r: r["events_per_s"],
}


def median_of_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """For each figure of stages 1 and 2, the round that is its median (the lower of the
    middle two for an even count), whole, so its latencies come from the same run. The
    ratio is the median of each round's own ratio, not a ratio of medians."""
    medians: dict[str, Any] = {}
    for name, key in _ROUND_FIGURES.items():
        values = sorted((r[name] for r in rounds if r.get(name) is not None), key=key)
        if values:
            medians[name] = values[(len(values) - 1) // 2]
    return medians


def _spread(results: dict[str, Any], name: str) -> str:
    """What follows a median in the table: its lowest and highest round, or nothing."""
    key = _ROUND_FIGURES[name]
    values = [key(r[name]) for r in results.get("rounds", []) if r.get(name) is not None]
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    shown = (_ratio(low), _ratio(high)) if name == "herald_over_bare" else (_num(low), _num(high))
    return f" ({shown[0]}-{shown[1]}, median of {len(values)})"


def summary_table(results: dict[str, Any]) -> str:
    """Render the results as a markdown table plus a machine line, skips, warnings, errors."""
    m = results["machine"]
    cfg = results["config"]
    lines = [
        f"## Herald benchmark, {results['started_at']}",
        "",
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_gb']} GB, "
        f"Python {m['python']}, {m['wrk']}; load generators share these CPUs",
        f"load: wrk -c {cfg['connections']} -t {cfg['threads']}, {cfg['duration_s']} s "
        f"after {cfg['warmup_s']} s warm-up; batch: {cfg['batch_clients']} clients x "
        f"{cfg['batch_size']} events; herald: `{cfg['herald_cmd']}`",
        *_postgres_load_line(results),
        "",
        "| measurement | rate | p50 | p99 | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = _sqlite_rows(results) + _delivery_rows(results) + _postgres_rows(results)
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if "bare_app.py" in cfg["herald_cmd"]:
        lines += ["", "NOTE: herald was replaced by the bare app (--herald-cmd bare)."]
    if skipped := results.get("skipped"):
        lines += ["", "SKIPPED:", *(f"- {stage}: {why}" for stage, why in skipped.items())]
    if results.get("warnings"):
        lines += ["", "WARNINGS:", *(f"- {w}" for w in results["warnings"])]
    if results.get("errors"):
        lines += ["", "ERRORS:", *(f"- {e}" for e in results["errors"])]
    return "\n".join(lines)


Row = tuple[str, str, str, str, str]


def _sqlite_rows(results: dict[str, Any]) -> list[Row]:
    cfg = results["config"]
    rows: list[Row] = []
    if bare := results.get("bare"):
        rows.append(_wrk_row("bare FastAPI POST /events", bare, "req/s", _spread(results, "bare")))
    if single := results.get("herald_single"):
        spread = _spread(results, "herald_single")
        rows.append(_wrk_row("herald POST /events", single, "events/s", spread))
    if (ratio := results.get("herald_over_bare")) is not None:
        spread = _spread(results, "herald_over_bare")
        rows.append(("herald / bare (req/s)", _ratio(ratio) + spread, "", "", ""))
    if batch := results.get("herald_batch"):
        label = f"herald POST /events/batch ({cfg['batch_size']}/req)"
        rows.append(_batch_row(label, batch, _spread(results, "herald_batch")))
    if inline := results.get("inline_single"):
        rows.append(_wrk_row("herald, dispatcher inline, POST /events", inline, "events/s"))
    if (ratio := results.get("inline_over_bare")) is not None:
        rows.append(("herald, dispatcher inline / bare (req/s)", _ratio(ratio), "", "", ""))
    if inline_batch := results.get("inline_batch"):
        label = f"herald, dispatcher inline, POST /events/batch ({cfg['batch_size']}/req)"
        rows.append(_batch_row(label, inline_batch))
    dispatch = "" if cfg["history_dispatcher"] else ", dispatcher off"
    for point in results.get("history", []):
        label = (
            f"herald POST /events, history {point['target']:,}{dispatch}"
            f" ({point['stored_before']:,} to {point['stored_after']:,} stored)"
        )
        rows.append(_wrk_row(label, point, "events/s"))
    if (ratio := results.get("history_ratio")) is not None:
        sizes = results["history"]
        label = f"history ratio ({sizes[-1]['target']:,} / {sizes[0]['target']:,})"
        rows.append((label, _ratio(ratio), "", "", ""))
    return rows


def _delivery_rows(results: dict[str, Any]) -> list[Row]:
    delivery = results.get("delivery") or {}
    labels = {"stub": "stub provider", "webhook": "webhook to a 127.0.0.1 receiver"}
    rows: list[Row] = []
    for provider, label in labels.items():
        if not (d := delivery.get(provider)):
            continue
        problems = len(d["checks"]["problems"])
        rows.append(
            (
                f"herald worker delivery, {label} ({d['messages']:,} messages, SQLite;"
                f" {_num(d['overall_messages_per_s'])}/s with start-up)",
                f"{_num(d['messages_per_s'])} messages/s",
                "",
                "",
                str(problems),
            )
        )
    return rows


def _postgres_load_line(results: dict[str, Any]) -> list[str]:
    pg = results.get("postgres") or {}
    if "reconnect_every" not in pg:
        return []
    every = pg["reconnect_every"]
    how = (
        f"wrk reconnects every {every} requests per thread, a new connection per batch"
        if every
        else "connections kept for the whole run"
    )
    return [f"postgres: `herald serve --workers N --no-dispatcher`, a fresh database per N; {how}"]


def _postgres_rows(results: dict[str, Any]) -> list[Row]:
    pg = results.get("postgres") or {}
    rows: list[Row] = []
    for point in pg.get("points", []):
        n = point["workers"]
        where = (
            f"PostgreSQL {pg['server_version'].split()[0]}, {n} API process{'es' if n > 1 else ''}"
        )
        commits = point.get("single_commits_per_1000_events")
        grouping = f" ({commits:,.0f} commits per 1000 events)" if commits is not None else ""
        label = f"herald POST /events, {where}{grouping}"
        rows.append(_wrk_row(label, point["single"], "events/s"))
        rows.append(_batch_row(f"herald POST /events/batch, {where}", point["batch"]))
    if len(pg.get("points", [])) > 1:
        counts = "/".join(str(p["workers"]) for p in pg["points"])
        single = " / ".join(_ratio(r) for r in pg["single_scaling"])
        batch = " / ".join(_ratio(r) for r in pg["batch_scaling"])
        rows.append((f"PostgreSQL scaling, {counts} processes (single)", single, "", "", ""))
        rows.append((f"PostgreSQL scaling, {counts} processes (batch)", batch, "", "", ""))
    return rows


def _batch_row(label: str, batch: dict[str, Any], spread: str = "") -> Row:
    return (
        label,
        f"{_num(batch['events_per_s'])} events/s{spread}",
        _ms(batch["p50_ms"]),
        _ms(batch["p99_ms"]),
        str(batch["failed_batches"]),
    )


def _wrk_row(label: str, r: dict[str, Any], unit: str, spread: str = "") -> Row:
    errors = r["non_2xx"] + r["socket_errors"]
    return (
        label,
        f"{_num(r['requests_per_s'])} {unit}{spread}",
        _ms(r["p50_ms"]),
        _ms(r["p99_ms"]),
        str(errors),
    )


def _num(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
