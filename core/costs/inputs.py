"""The cost comparison's inputs: one table of bounds, units and defaults, and one parser, for the
command's flags, the API's query parameters and a benchmark file alike, so that no way in takes a
value another refuses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from portabot.costs.model import KEPT_DAYS, MONTH_DAYS, SECONDS, Workload

DEFAULT_UPDATES = 100_000
PEAK_TO_AVERAGE = 10.0
"""A bot's busiest second, as a multiple of its average rate, when no peak is given."""
LEAST_PEAK = 0.01
"""The peak taken for a bot too quiet for PEAK_TO_AVERAGE to mean anything."""
MAX_UPDATES = 1e11
SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
"""What a count may end with: 10k, 2.5M, 1G (or 1B)."""
SHOWN = 40
"""Characters of a refused value quoted back."""


class InputError(ValueError):
    """A value the comparison refuses; the message says why in one line, without the name (each
    way in names it its own way: a flag, a query parameter, a key of a file)."""


@dataclass(frozen=True, slots=True)
class Input:
    name: str
    flag: str
    query: str | None
    """The API's query parameter; None: the command line only."""
    field: str
    """The Workload field it sets."""
    unit: str
    low: float
    high: float
    zero: bool
    """Whether 0 is taken when `low` is 0 (else only values above it)."""
    default: str | None
    """The default as --help shows it, made from the code's own default."""
    help: str
    whole: bool = False
    counts: bool = False
    """A count of updates: takes SUFFIXES, and on the command line a comma-separated list."""


def _default(name: str) -> Any:
    """A Workload field's default: help shows what the model takes, so the two cannot drift."""
    return next(f.default for f in fields(Workload) if f.name == name)


INPUTS = (
    Input(
        name="updates",
        flag="--updates",
        query="updates",
        field="updates",
        unit="updates a month",
        low=0.0,
        high=MAX_UPDATES,
        zero=True,
        default=f"{DEFAULT_UPDATES:,}",
        help="updates a month, e.g. 250000 or 2.5M; several (10k,1M,100M) compare volumes",
        counts=True,
    ),
    Input(
        name="per_day",
        flag="--per-day",
        query=None,
        field="updates",
        unit="updates a day",
        low=0.0,
        high=MAX_UPDATES / MONTH_DAYS,
        zero=True,
        default=None,
        help="updates a day instead of a month, one or several like --updates",
        counts=True,
    ),
    Input(
        name="ms",
        flag="--ms",
        query="ms",
        field="ms",
        unit="ms",
        low=0.0,
        high=900_000.0,
        zero=False,
        default=f"{_default('ms'):g} ms",
        help="average handling time of an update (Lambda bills it, and stops one at 15 minutes)",
    ),
    Input(
        name="memory",
        flag="--memory",
        query="memory",
        field="memory_mb",
        unit="MB",
        low=128.0,
        high=10_240.0,
        zero=False,
        default=f"{_default('memory_mb')} MB",
        help="Lambda's memory setting, also what one worker process needs",
        whole=True,
    ),
    Input(
        name="peak",
        flag="--peak",
        query="peak",
        field="peak",
        unit="updates a second",
        low=0.0,
        high=1e6,
        zero=False,
        default=f"{PEAK_TO_AVERAGE:g}× the average rate",
        help="updates a second at the busiest moment, not below the average rate",
    ),
    Input(
        name="db_gb",
        flag="--db-gb",
        query="db_gb",
        field="db_gb",
        unit="GB",
        low=0.0,
        high=10_000.0,
        zero=True,
        default=f"the update ids of {KEPT_DAYS:g} days, as `portabot maintain` keeps them",
        help="the database's size",
    ),
    Input(
        name="throughput",
        flag="--throughput",
        query="throughput",
        field="throughput",
        unit="updates a second",
        low=1.0,  # below it, a peak needs more machines than any host would rent
        high=1e6,
        zero=False,
        default=f"{_default('throughput'):g} updates a second",
        help="updates a second one vCPU sustains (a dyno counts as one)",
    ),
    Input(
        name="init_ms",
        flag="--init-ms",
        query="init_ms",
        field="init_ms",
        unit="ms",
        low=0.0,
        high=10_000.0,
        zero=True,
        default=f"{_default('init_ms'):g} ms",
        help="a Lambda cold start's INIT time (billed since 2025-08-01; Lambda allows 10 s)",
    ),
    Input(
        name="lambda_db_usd",
        flag="--lambda-db-usd",
        query="lambda_db_usd",
        field="lambda_db_usd",
        unit="USD a month",
        low=0.0,
        high=1e6,
        zero=True,
        default="Neon's free or Launch plan",
        help="what Lambda's PostgreSQL costs a month; 0 prices Lambda alone",
    ),
    Input(
        name="workers",
        flag="--workers",
        query="workers",
        field="workers",
        unit="processes",
        low=1.0,
        high=64.0,
        zero=False,
        default=f"{_default('workers')}",
        help="worker processes per dyno or machine (WEB_CONCURRENCY)",
        whole=True,
    ),
    Input(
        name="pool",
        flag="--pool-size",
        query="pool",
        field="pool",
        unit="connections",
        low=1.0,
        high=100.0,
        zero=False,
        default=f"{_default('pool')}",
        help="database connections per worker process (DATABASE_POOL_SIZE)",
        whole=True,
    ),
    Input(
        name="egress_kb",
        flag="--egress-kb",
        query="egress_kb",
        field="egress_kb",
        unit="KB an update",
        low=0.0,
        high=10_000.0,
        zero=True,
        default=f"{_default('egress_kb'):g} KB",
        help="bytes sent out of the host per update (the reply's API call, the webhook's answer)",
    ),
)
INPUT = {spec.name: spec for spec in INPUTS}
SWITCHES = {
    "free_tier": "count AWS's always-free allowance (a new or otherwise idle account)",
    "tick": "Lambda runs what is due every minute, as the template's Tick=on does (it keeps a "
    "scale-to-zero database awake)",
}
"""The Workload's on/off inputs (both on by default): `--free-tier/--no-free-tier` and
`free_tier=0|1` on the API, and the same for `tick`."""


def parse(spec: Input, text: str) -> float:
    """A value as typed (`2.5M` where the input is a count), refused unless within its bounds;
    a count's suffix is applied first, so no suffix carries a value past them."""
    text = text.strip()
    factor = SUFFIXES.get(text[-1:].lower(), 1.0) if spec.counts else 1.0
    try:
        value = float(text[:-1] if factor != 1.0 else text) * factor
    except ValueError:
        raise InputError(f"must be a number, not {text[:SHOWN]!r}") from None
    return check(spec, value, text[:SHOWN])


def check(spec: Input, value: float, shown: str | None = None) -> float:
    """`value` if the input takes it (a number already, as a file gives it)."""
    shown = shown if shown is not None else f"{value:g}"
    taken = spec.low <= value <= spec.high and (value != 0 or spec.zero)
    if not (math.isfinite(value) and taken):
        raise InputError(f"must be {span(spec)}, not {shown}")
    if spec.whole and value != int(value):
        raise InputError(f"must be a whole number of {spec.unit}, not {shown}")
    return value


def span(spec: Input) -> str:
    """The values taken, in words: `from 0 to 10,000 GB`, `above 0 and at most 1,000,000 ms`."""
    high = f"{readable(spec.high)} {spec.unit}"
    if spec.low == 0 and not spec.zero:
        return f"above 0 and at most {high}"
    return f"from {readable(spec.low)} to {high}"


def readable(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:g}"


def workload(values: Mapping[str, float], switches: Mapping[str, bool]) -> Workload:
    """The workload of the given inputs (by Workload field, already checked), the others at their
    defaults: with no peak, PEAK_TO_AVERAGE times the average rate; a peak below it is refused."""
    given: dict[str, Any] = dict(values)
    updates = given.pop("updates", DEFAULT_UPDATES)
    average = updates / SECONDS
    peak = given.pop("peak", None)
    if peak is None:
        peak = max(average * PEAK_TO_AVERAGE, LEAST_PEAK)
    elif peak < average:
        raise InputError(f"peak ({peak:g}/s) is below the average rate ({average:.3g}/s)")
    for spec in INPUTS:
        if spec.whole and spec.field in given:
            given[spec.field] = int(given[spec.field])
    return Workload(updates=updates, peak=peak, **given, **switches)
