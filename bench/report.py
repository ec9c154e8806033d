"""The results: the goals (issues #7 and #17) judged against what was measured, the JSON file that
`portabot costs --from-bench` reads, and the same as markdown tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, Any]]


def _get(results: Results, *path: str) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _over(numerator: Any, denominator: Any) -> float | None:
    if not numerator or not denominator:
        return None
    return round(float(numerator) / float(denominator), 3)


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    limit: float
    at_least: bool
    """True: the measured value must be at least `limit`; False: at most."""
    measured: float | None

    @property
    def unit(self) -> str:
        """× for a ratio of two servers' figures, else the target's own unit."""
        return next((unit for unit in ("×", "ms", "MB") if unit in self.target), "")

    def judged(self) -> dict[str, Any]:
        met = None
        if self.measured is not None:
            met = self.measured >= self.limit if self.at_least else self.measured <= self.limit
        ratio = round(self.measured / self.limit, 3) if self.measured and self.limit else None
        return {
            "name": self.name,
            "target": self.target,
            "measured": self.measured,
            "unit": self.unit,
            "met": met,
            "ratio": ratio,
        }


def ratios(results: Results, peer: str) -> list[float]:
    """portabot-postgres's replies/s over `peer`'s, turn by turn (the runs made in turns)."""
    ours = [run["replies_per_second"] for run in _get(results, "portabot-postgres", "runs") or []]
    theirs = [run["replies_per_second"] for run in _get(results, peer, "runs") or []]
    return [r for a, b in zip(ours, theirs, strict=False) if (r := _over(a, b)) is not None]


def comparison(results: Results) -> dict[str, dict[str, Any]]:
    """Per peer: the ratio of each turn, their median and range."""
    found = {}
    for peer in ("aiogram", "ptb"):
        each = ratios(results, peer)
        if each:
            found[peer] = {
                "ratios": each,
                "median": round(statistics.median(each), 3),
                "min": min(each),
                "max": max(each),
            }
    return found


def goals(results: Results) -> list[dict[str, Any]]:
    def replies(name: str) -> Any:
        return _get(results, name, "replies_per_second")

    def worst(peer: str) -> float | None:
        """The lowest ratio of the turns: a goal for each run holds only if it holds there."""
        each = ratios(results, peer)
        return min(each) if each else _over(replies("portabot-postgres"), replies(peer))

    outbound = [
        _get(results, "round-trips", phase, "outbound_calls_per_update")
        for phase in ("first_contact", "ordinary", "cold")
    ]
    rss = [_get(results, name, "memory_mb", "vmhwm") for name in _PORTABOT]
    listed = [
        Goal(
            "inline replies keep up with the bare endpoint",
            "inline ≥ 0.8 × ceiling acks/s",
            0.8,
            True,
            _over(
                _get(results, "inline", "acks_per_second"),
                _get(results, "ceiling", "acks_per_second"),
            ),
        ),
        Goal(
            "portabot on PostgreSQL against aiogram",
            "portabot-postgres ≥ 2.5 × aiogram replies/s, in each run",
            2.5,
            True,
            worst("aiogram"),
        ),
        Goal(
            "portabot on PostgreSQL against python-telegram-bot",
            "portabot-postgres ≥ 3 × ptb replies/s, in each run",
            3,
            True,
            worst("ptb"),
        ),
        Goal(
            "portabot on SQLite against aiogram",
            "portabot-sqlite ≥ 1 × aiogram replies/s",
            1,
            True,
            _over(replies("portabot-sqlite"), replies("aiogram")),
        ),
        Goal(
            "cold start to first reply (Lambda handler, PostgreSQL)",
            "≤ 1.5 × `import telegram.ext` (median of the runs' ratios, in turns)",
            1.5,
            False,
            _get(results, "cold-start", "postgres", "paired", "ratio")
            or _over(
                _get(results, "cold-start", "postgres", "cold_start_ms"),
                _get(results, "peer-imports", "ptb", "import_ms"),
            ),
        ),
        Goal(
            "warm invocation on SQLite",
            "≤ 5 ms handler time",
            5,
            False,
            _get(results, "cold-start", "sqlite", "warm_ms"),
        ),
        Goal(
            "database round trips per ordinary update (PostgreSQL), the person remembered",
            "≤ 1",
            1,
            False,
            _get(results, "round-trips", "ordinary", "round_trips_per_update"),
        ),
        Goal(
            "database round trips per ordinary update (PostgreSQL), the person not remembered",
            "≤ 2",
            2,
            False,
            _get(results, "round-trips", "cold", "round_trips_per_update"),
        ),
        Goal(
            "outbound calls when the reply fits in the webhook response",
            "0 per update",
            0,
            False,
            max((x for x in outbound if x is not None), default=None),
        ),
        Goal(
            "RSS per worker under load (VmHWM)",
            "≤ 80 MB",
            80,
            False,
            max((x for x in rss if x is not None), default=None),
        ),
    ]
    return [goal.judged() for goal in listed]


_PORTABOT = ("portabot-sqlite", "portabot-postgres")
_BOTS = (*_PORTABOT, "aiogram", "ptb")


def checks(results: Results) -> list[dict[str, Any]]:
    """That the fake Bot API was not what limited the bots."""
    capacity = _get(results, "fake-api", "acks_per_second")
    fastest = max(
        (replies for name in _BOTS if (replies := _get(results, name, "replies_per_second"))),
        default=None,
    )
    if capacity is None or fastest is None:
        return []
    ratio = round(capacity / fastest, 2)
    return [
        {
            "name": "the fake Bot API is not the bottleneck",
            "target": "its capacity ≥ 2 × the most replies/s a bot reached",
            "measured": ratio,
            "met": ratio >= 2,
        }
    ]


def headline(results: Results) -> dict[str, float]:
    """The figures `portabot costs --from-bench` reads (only those measured)."""
    found = {
        "ms_per_update": _get(results, "cold-start", "postgres", "warm_ms"),
        "rss_mb": _get(results, "portabot-postgres", "memory_mb", "vmhwm"),
        "updates_per_second": _get(results, "portabot-postgres", "replies_per_second"),
        "cold_start_ms": _get(results, "cold-start", "postgres", "cold_start_ms"),
    }
    return {key: value for key, value in found.items() if value}


def document(results: Results, machine: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    errors = {name: r["error"] for name, r in results.items() if "error" in r}
    return {
        **headline(results),
        "machine": machine,
        "settings": settings,
        "scenarios": results,
        "comparison": comparison(results),
        "goals": goals(results),
        "checks": checks(results),
        "errors": errors,
    }
