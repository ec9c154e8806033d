"""The benchmark's result file, read as the workload's measured inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from portabot.costs.inputs import INPUT, InputError, check

BENCH_FIELDS = {
    "ms_per_update": "ms",
    "rss_mb": "memory",
    "updates_per_second": "throughput",
    "cold_start_ms": "init_ms",
}
"""What the benchmark's JSON file gives (top-level keys) and the input it sets."""


class BenchError(Exception):
    """A benchmark file that cannot be used; the message is one line."""


def from_bench(path: Path) -> dict[str, float]:
    """The Workload fields the file measures, each within the bounds a flag has."""
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
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BenchError(f"{path}: {key} must be a number")
        spec = INPUT[name]
        if name == "memory" and 0 < value < math.inf:
            value = max(spec.low, int(value + 0.5))  # Lambda's setting: whole MB, at least 128
        try:
            found[spec.field] = check(spec, float(value))
        except InputError as exc:
            raise BenchError(f"{path}: {key} {exc}") from None
    if not found:
        raise BenchError(f"{path}: none of {', '.join(BENCH_FIELDS)} found")
    return found
