"""The throughput table's bots as a chart (bench/results/throughput.svg, shown in the README):
replies/s and p99 of each, one worker each, in this run; for those measured in turns the bar is
the median run and the whisker spans every run. The bare endpoints stay in the table: beside
them the bots' bars would be too short to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NAME = "throughput.svg"
LABELS = {
    "portabot-sqlite": "portabot\nSQLite",
    "portabot-postgres": "portabot\nPostgreSQL",
    "aiogram": "aiogram 3\necho",
    "ptb": "python-telegram-\nbot 22 echo",
}
OURS = ("portabot-sqlite", "portabot-postgres")


def draw(document: dict[str, Any], path: Path) -> bool:
    """Write the chart; False (and no file) when no server was measured."""
    scenarios = document["scenarios"]
    shown = [name for name in LABELS if name in scenarios and "error" not in scenarios[name]]
    if not shown:
        path.unlink(missing_ok=True)
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # A fixed salt and no date: the same bytes for the same figures.
    with matplotlib.rc_context(
        {"svg.hashsalt": "portabot", "svg.fonttype": "none", "font.size": 9}
    ):
        figure = Figure(figsize=(10, 4.2), layout="constrained")
        replies_axes, p99_axes = figure.subplots(1, 2)
        positions = range(len(shown))
        colours = ["#2f6fdf" if name in OURS else "#9aa3b5" for name in shown]
        replies = [_replies(scenarios[name]) for name in shown]
        spans = [_span(scenarios[name]) for name in shown]
        low = [value - lo for value, (lo, _) in zip(replies, spans, strict=True)]
        high = [hi - value for value, (_, hi) in zip(replies, spans, strict=True)]
        replies_axes.bar(positions, replies, color=colours, yerr=[low, high], capsize=4)
        for x, value, (_, top) in zip(positions, replies, spans, strict=True):
            replies_axes.annotate(
                f"{value:,.0f}", (x, top), ha="center", va="bottom",
                xytext=(0, 3), textcoords="offset points",
            )  # fmt: skip
        replies_axes.set_title("replies per second (bar: median run; whisker: every run)")
        p99 = [scenarios[name]["latency_ms"]["p99"] for name in shown]
        p99_axes.bar(positions, p99, color=colours)
        p99_axes.set_title("p99 latency of the webhook, ms (lower is better)")
        for axes in (replies_axes, p99_axes):
            axes.set_xticks(list(positions), [LABELS[name] for name in shown], fontsize=8)
            axes.spines[["top", "right"]].set_visible(False)
        machine, settings = document["machine"], document["settings"]
        figure.suptitle(
            f"One worker each under wrk ({settings['connections']} connections, "
            f"{settings['seconds']:g} s), {machine['cores']} cores, {machine['date']}",
            fontsize=9,
        )
        kind = "png" if path.suffix == ".png" else "svg"  # a PNG to look at by hand
        figure.savefig(path, format=kind, metadata={"Date": None} if kind == "svg" else {})
    return True


def _replies(found: dict[str, Any]) -> float:
    return float(found["replies_per_second"])


def _span(found: dict[str, Any]) -> tuple[float, float]:
    runs = [run["replies_per_second"] for run in found.get("runs") or []]
    value = _replies(found)
    return (min(runs), max(runs)) if runs else (value, value)
