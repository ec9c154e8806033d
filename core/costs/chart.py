"""The cost comparison as a chart: monthly cost against monthly updates, one line per option.

`draw` needs matplotlib (`pip install 'portabot[costs]'`) and imports it only when called; the
helpers that lay the chart out are pure Python, shared with the web page's own chart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portabot.costs.model import Workload, best_costs, break_evens, curves, volume_grid
from portabot.costs.prices import PriceBook

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMATS = (".svg", ".png")
FLOOR_USD = 0.1
"""The cost axis starts here: a log axis has no $0, so free options are drawn on its edge."""
POINTS_PER_DECADE = 16
PALETTES = {
    "heroku": ("#3f007d", "#6a51a3", "#807dba", "#9e9ac8"),
    "lambda": ("#a63603", "#d94801", "#f16913", "#fd8d3c"),
    "vps": ("#08519c", "#2171b5", "#4292c6", "#6baed6"),
}
"""A colour family per target, dark to light; the page's script uses the same colours."""
OTHER = ("#252525", "#636363", "#969696")
DASHES = ("-", "--", ":", "-.")


class ChartError(ValueError):
    """A chart that cannot be drawn (a wrong suffix, or no matplotlib); the message is one line."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """Where one target's cheapest plan stops being cheaper than another's."""

    cheaper_below: str
    cheaper_above: str
    updates: float
    monthly_usd: float
    """The cost where the two lines cross (at a jump, the cost of the line jumped across)."""
    sentence: str
    """The break-even in words, with what changes there."""


def crossings(w: Workload, book: PriceBook) -> list[Crossing]:
    found = []
    for mark in break_evens(w, book):
        below, above, volume = mark.cheaper_below, mark.cheaper_above, mark.updates
        before = best_costs(w.at(volume / 1.001), book)
        after = best_costs(w.at(volume * 1.001), book)
        jump = {t: abs(after[t] - before[t]) for t in (below, above)}
        # A line that steps (a plan change, the end of a free tier) crosses the other one
        # somewhere on its vertical step: the point is on the line that does not step.
        steady = below if jump[below] <= jump[above] else above
        cost = (before[steady] + after[steady]) / 2
        found.append(Crossing(below, above, volume, cost, mark.sentence))
    return found


def volumes(w: Workload, marks: list[Crossing]) -> list[float]:
    """Monthly updates from 1,000 to 1,000,000,000, widened by whole decades to show the
    workload and every break-even."""
    seen = [v for v in [w.updates, *(c.updates for c in marks)] if v > 0]
    low = 10 ** math.floor(math.log10(min([1e3, *seen])))
    high = 10 ** math.ceil(math.log10(max([1e9, *seen])))
    decades = round(math.log10(high / low))
    return volume_grid(low, high, decades * POINTS_PER_DECADE + 1)


def colours(keys: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, dash) for each option key, by its target's family and its place in it."""
    styles = {}
    seen: dict[str, int] = {}
    for key in keys:
        target = key.split(":", 1)[0]
        n = seen[target] = seen.get(target, -1) + 1
        family = PALETTES.get(target, OTHER)
        styles[key] = (family[n % len(family)], DASHES[n % len(DASHES)])
    return styles


def count_label(value: float) -> str:
    """1k, 10k, 1M, 100M, 1B: a count as the axis shows it."""
    value = float(f"{value:.3g}")  # 999,999 is 1M, not 1e+03k
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:,.3g}{suffix}"
    return f"{value:.3g}"


def usd_label(value: float) -> str:
    return f"${value:,.0f}" if value >= 1 else f"${value:.2g}"


def element_id(key: str) -> str:
    return "option-" + re.sub(r"[^A-Za-z0-9_.-]", "-", key)


def draw(w: Workload, book: PriceBook, path: Path) -> None:
    """Write the chart to `path`, an SVG (the same bytes each time, to be committed) or a PNG."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ChartError(f"the chart must be a .svg or .png file, not {path.name!r}")
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise ChartError(
            "drawing a chart needs matplotlib: pip install 'portabot[costs]'"
        ) from None
    matplotlib.use("Agg")  # never a window, also without a display

    marks = crossings(w, book)
    grid = volumes(w, marks)
    lines = curves(w, book, grid)
    # A fixed hash salt and no date: the same SVG bytes for the same chart, to be committed.
    # Text stays text (fonttype none): smaller, searchable and diffable.
    with matplotlib.rc_context(
        {"svg.hashsalt": "portabot", "svg.fonttype": "none", "font.size": 9}
    ):
        figure = Figure(figsize=(10, 5.6), layout="constrained")
        ax = figure.add_subplot()
        plot(ax, w, grid, lines, marks)
        metadata = {"Date": None} if suffix == ".svg" else {}
        figure.savefig(path, format=suffix[1:], dpi=120, metadata=metadata)


def plot(
    ax: Axes,
    w: Workload,
    grid: list[float],
    lines: dict[str, list[float | None]],
    marks: list[Crossing],
) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    top = FLOOR_USD
    for (key, costs), (colour, dash) in zip(
        lines.items(), colours(list(lines)).values(), strict=True
    ):
        ys = [math.nan if c is None else max(c, FLOOR_USD) for c in costs]
        fits = [y for y in ys if not math.isnan(y)]
        top = max([top, *fits])
        label = key if fits else f"{key} (does not fit)"
        (line,) = ax.plot(grid, ys, dash, color=colour, linewidth=1.6, label=label)
        line.set_gid(element_id(key))

    ax.axvline(
        max(w.updates, grid[0]),
        color="#1d2330",
        linestyle=(0, (6, 3)),
        linewidth=1.2,
        label=f"your workload: {count_label(w.updates)} updates a month",
        gid="workload",
    )
    if marks:
        xs = [c.updates for c in marks]
        ys = [max(c.monthly_usd, FLOOR_USD) for c in marks]
        points = ax.scatter(
            xs,
            ys,
            s=36,
            marker="o",
            facecolor="white",
            edgecolor="#b3261e",
            zorder=5,
            label="break-even: cheaper below | above",
        )
        points.set_gid("break-evens")
        for n, (mark, y) in enumerate(zip(marks, ys, strict=True)):
            ax.annotate(
                f"{mark.cheaper_below} | {mark.cheaper_above}\n{count_label(mark.updates)}",
                (mark.updates, y),
                xytext=(6, 10 if n % 2 == 0 else -22),
                textcoords="offset points",
                fontsize=7,
                color="#b3261e",
            )

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(grid[0], grid[-1])
    ax.set_ylim(FLOOR_USD, 10 ** math.ceil(math.log10(top * 1.5)))
    for axis, name in ((ax.xaxis, count_label), (ax.yaxis, usd_label)):
        axis.set_major_locator(LogLocator(base=10))
        axis.set_major_formatter(FuncFormatter(lambda value, _, name=name: name(value)))
        axis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", color="#d5dae3", linewidth=0.8)
    ax.set_xlabel("updates a month")
    ax.set_ylabel(f"monthly cost (USD; under {usd_label(FLOOR_USD)} on the bottom edge)")
    peak = f"peak {w.peak / w.rate:.3g}× the average, " if w.rate else ""
    ax.set_title(
        "Monthly hosting cost against traffic\n"
        f"{w.ms:g} ms and {w.memory_mb} MB an update, {peak}database {w.database_gb:.2g} GB, "
        f"AWS {'with' if w.free_tier else 'without'} its free tier",
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
