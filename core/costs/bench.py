"""The workload to price: from the command line's flags, or from the benchmark's result file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from portabot.costs.model import SECONDS, Workload

DEFAULT_UPDATES = 100_000
PEAK_TO_AVERAGE = 10.0
"""A bot's busiest second, as a multiple of its average rate, when --peak is not given."""
BENCH_FIELDS = {
    "ms_per_update": "ms",
    "rss_mb": "memory_mb",
    "updates_per_second": "throughput",
    "cold_start_ms": "init_ms",
}
"""What the benchmark's JSON file gives (top-level keys) and the workload field it sets."""


class BenchError(Exception):
    """A benchmark file that cannot be used; the message is one line."""


def from_bench(path: Any) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BenchError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a JSON object")
    found = {}
    for key, name in BENCH_FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise BenchError(f"{path}: {key} must be a positive number")
        found[name] = float(value)
    if not found:
        raise BenchError(f"{path}: none of {', '.join(BENCH_FIELDS)} found")
    return found


def workload(args: argparse.Namespace) -> Workload:
    values: dict[str, Any] = from_bench(args.from_bench) if args.from_bench else {}
    if "memory_mb" in values:  # Lambda takes whole megabytes, at least 128
        values["memory_mb"] = max(128, int(values["memory_mb"] + 0.5))
    flags = {
        "ms": args.ms,
        "memory_mb": int(args.memory) if args.memory is not None else None,
        "db_gb": args.db_gb,
        "throughput": args.throughput,
        "init_ms": args.init_ms,
        "lambda_db_usd": args.lambda_db_usd,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    counts = [n * 30.4167 for n in args.per_day] if args.per_day is not None else args.updates
    updates = counts[0] if counts else DEFAULT_UPDATES
    peak = args.peak if args.peak is not None else max(updates / SECONDS * PEAK_TO_AVERAGE, 0.01)
    return Workload(updates=updates, peak=peak, free_tier=args.free_tier, **values)
