"""The cost comparison as a chart: monthly cost against monthly updates, one line per option.

`draw` needs matplotlib (`pip install 'portabot[costs]'`) and imports it only when called; the
layout (the lines, their styles, the labels and notes) is pure Python, and the web page's own
chart draws the same layout from the API's JSON.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portabot.costs.model import (
    NOT_INCLUDED,
    TARGET_NAMES,
    Option,
    Workload,
    best_costs,
    break_evens,
    cheapest,
    curves,
    endings,
    options,
    usd,
    volume_grid,
)
from portabot.costs.prices import PriceBook

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = (".svg", ".png")
LINEAR_USD = 1.0
"""The cost axis is linear from $0 to here and logarithmic above (symlog): a free option is
drawn at $0, not on the edge of a log axis that has no $0."""
SCALE_NOTE = (
    f"$0 to ${LINEAR_USD:g} is drawn on a linear scale (a free option sits on $0), more on a "
    "logarithmic one."
)
POINTS_PER_DECADE = 16
ALIKE = 0.02
"""Two lines of one host closer than this (relative) are named together in the legend."""
PALETTES = {
    "heroku": ("#4b1c7a", "#c2368f", "#7d6bd6", "#2a0a3a", "#e07cd0", "#8d6a9f"),
    "lambda": ("#d95f02", "#7f2704", "#e6ab02", "#c0392b", "#a6761d", "#f28e5c"),
    "vps": ("#1f5fbf", "#0b8a83", "#6ba7e8", "#0b2f6b", "#2e9e4f", "#6a8caf"),
}
"""A colour family per host, its members apart in hue as well as in lightness."""
OTHER = ("#252525", "#737373", "#969696", "#4d4d4d", "#b0b0b0", "#111111")
DASHES = ((), (6, 2.5), (1.2, 1.8), (6, 2, 1.2, 2), (11, 3), (3, 1.5, 1.2, 1.5, 1.2, 1.5))
"""On-off lengths, in line widths: solid, dashed, dotted, dash-dot, long dashes, dash-dot-dot."""
MARKERS = (
    ("o", "circle"),
    ("s", "square"),
    ("^", "triangle"),
    ("D", "diamond"),
    ("v", "triangle-down"),
    ("P", "plus"),
)
"""Matplotlib's marker and the name the page's script draws, one per option of a host."""
LINE_WIDTH = 1.6
CHEAPEST_WIDTH = 2.8
WORKING = re.compile(r" \(.*\)$")
"""How a reason's figure was worked out, in parentheses at its end: "(101 CU-hours × $0.106)"."""


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
    why: str

    @property
    def label(self) -> str:
        """The sentence short enough for the chart: the volume rounded, the working left out."""
        below = TARGET_NAMES[self.cheaper_below]
        why = WORKING.sub("", self.why)
        return (
            f"{below[0].upper()}{below[1:]} cheaper below {count_label(self.updates)}, "
            f"{TARGET_NAMES[self.cheaper_above]} above:\n{why}"
        )


@dataclass(frozen=True, slots=True)
class Ending:
    """Where an option's line stops: the first volume it no longer fits at, and why."""

    option: str
    updates: float
    why: str
    number: int
    """The mark drawn at the line's end, the note under the chart names it."""

    @property
    def sentence(self) -> str:
        return (
            f"({self.number}) {self.option} no longer fits at {count_label(self.updates)} "
            f"updates a month: {self.why}"
        )


@dataclass(frozen=True, slots=True)
class Style:
    colour: str
    dash: tuple[float, ...]
    marker: int
    """An index into MARKERS."""
    marks_at: tuple[int, ...]
    """The volumes' indices that carry a marker: one a decade, staggered within a host so that
    lines drawn on top of each other still show every option's marker."""
    note: str = ""
    """For a line within ALIKE of another of its host: which, and up to where."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything the chart shows, for `draw` and for the page's script (as JSON)."""

    workload: Workload
    volumes: list[float]
    lines: dict[str, list[float | None]]
    styles: dict[str, Style]
    marks: list[Crossing]
    endings: list[Ending]
    options: list[Option]
    """The options at the workload."""
    cheapest: Option | None

    @property
    def cheapest_label(self) -> str:
        """What to pick at the workload: "vps:digitalocean-512mb $4.00/month"."""
        if self.cheapest is None:
            return f"nothing fits at {count_label(self.workload.updates)} updates a month"
        return f"{self.cheapest.key} {usd(self.cheapest.monthly_usd)}/month"

    @property
    def notes(self) -> list[str]:
        """The lines under the chart: the break-evens and endings in full, why an option does
        not fit at the workload, what is left out."""
        at = f"{count_label(self.workload.updates)} updates a month"
        return [
            *(f"{mark.sentence}." for mark in self.marks),
            *(ending.sentence for ending in self.endings),
            *(f"{o.key} does not fit at {at}: {o.why}" for o in self.options if not o.fits),
            SCALE_NOTE,
            f"Not included: {'; '.join(NOT_INCLUDED)}.",
        ]


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
        found.append(Crossing(below, above, volume, cost, mark.sentence, mark.why))
    return found


def volumes(w: Workload, marks: list[Crossing]) -> list[float]:
    """Monthly updates from 1,000 to 1,000,000,000, widened by whole decades to show the
    workload and every break-even."""
    seen = [v for v in [w.updates, *(c.updates for c in marks)] if v > 0]
    low = 10 ** math.floor(math.log10(min([1e3, *seen])))
    high = 10 ** math.ceil(math.log10(max([1e9, *seen])))
    decades = round(math.log10(high / low))
    return volume_grid(low, high, decades * POINTS_PER_DECADE + 1)


def layout(w: Workload, book: PriceBook) -> Layout:
    marks = crossings(w, book)
    grid = volumes(w, marks)
    lines = curves(w, book, grid)
    ended = [
        Ending(key, volume, why, n)
        for n, (key, (volume, why)) in enumerate(endings(w, book, grid).items(), start=1)
    ]
    found = options(w, book)
    return Layout(w, grid, lines, styles(grid, lines), marks, ended, found, cheapest(found))


def styles(grid: list[float], lines: dict[str, list[float | None]]) -> dict[str, Style]:
    """A colour, dash and marker for each option, all three different from every other option
    of its host; each host's lines keep their family's colours."""
    hosts: dict[str, list[str]] = {}
    for key in lines:
        hosts.setdefault(key.split(":", 1)[0], []).append(key)
    found = {}
    for target, keys in hosts.items():
        family = PALETTES.get(target, OTHER)
        for n, key in enumerate(keys):
            start = round((n + 0.5) * POINTS_PER_DECADE / len(keys))
            points = lines[key]
            marks_at = tuple(
                i for i in range(start, len(points), POINTS_PER_DECADE) if points[i] is not None
            )
            found[key] = Style(
                family[n % len(family)],
                DASHES[n % len(DASHES)],
                n % len(MARKERS),
                marks_at,
                alike_note(key, keys[:n], grid, lines),
            )
    return found


def alike_note(
    key: str, earlier: list[str], grid: list[float], lines: dict[str, list[float | None]]
) -> str:
    """Names the first earlier line of the host within ALIKE of this one from the lowest
    volume up: on the whole chart, or at least its left half (where one hides the other)."""
    points = lines[key]
    for other in earlier:
        alike = 0
        for mine, theirs in zip(points, lines[other], strict=True):
            if not same_cost(mine, theirs):
                break
            alike += 1
        if not any(c is not None for c in points[:alike]):
            continue  # alike where neither is drawn is not worth a note
        if alike == len(points):
            return f"= {other} within {ALIKE:.0%}"
        if alike >= len(points) / 2:
            return f"within {ALIKE:.0%} of {other} below {count_label(grid[alike])}"
    return ""


def same_cost(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= max(ALIKE * max(a, b), 0.01)


def count_label(value: float) -> str:
    """1k, 10k, 1M, 100M, 1B: a count as the axis shows it."""
    value = float(f"{value:.3g}")  # 999,999 is 1M, not 1e+03k
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:,.3g}{suffix}"
    return f"{value:.3g}"


def usd_label(value: float) -> str:
    return f"${value:,.0f}" if value >= 1 or value == 0 else f"${value:.2g}"


def plain(text: str) -> str:
    """Text as matplotlib shows it as written: two dollar signs would start its math mode."""
    return text.replace("$", r"\$")


def element_id(key: str) -> str:
    return "option-" + re.sub(r"[^A-Za-z0-9_.-]", "-", key)


NOTE_WIDTH = 150
"""Characters a note line holds under a 10-inch chart at 8 points."""
NOTE_INCHES = 0.15
LABEL_STEP = 0.075
"""The height of a break-even's two-line label, as a share of the chart's."""


def draw(w: Workload, book: PriceBook, path: Path) -> None:
    """Write the chart to `path`, an SVG (the same bytes each time, to be committed) or a PNG."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ChartError(f"the chart must be a .svg or .png file, not {path.name!r}")
    try:
        import matplotlib
    except ImportError:
        raise ChartError(
            "drawing a chart needs matplotlib: pip install 'portabot[costs]'"
        ) from None
    matplotlib.use("Agg")  # never a window, also without a display
    # A fixed hash salt and no date: the same SVG bytes for the same chart, to be committed.
    # Text stays text (fonttype none): smaller, searchable and diffable.
    with matplotlib.rc_context(
        {"svg.hashsalt": "portabot", "svg.fonttype": "none", "font.size": 9}
    ):
        drawn = figure(layout(w, book))
        metadata = {"Date": None} if suffix == ".svg" else {}
        drawn.savefig(path, format=suffix[1:], dpi=120, metadata=metadata)


def figure(chart: Layout) -> Figure:
    """The chart above, its notes below (the break-evens and endings in full, what is left out)."""
    from matplotlib.figure import Figure

    notes = [part for note in chart.notes for part in textwrap.wrap(note, NOTE_WIDTH)]
    below = NOTE_INCHES * len(notes) + 0.1
    drawn = Figure(figsize=(10, 5.6 + below), layout="constrained")
    rows = drawn.add_gridspec(2, 1, height_ratios=(5.6, below))
    top, bottom = drawn.add_subplot(rows[0]), drawn.add_subplot(rows[1])
    plot(top, chart)
    bottom.set_axis_off()
    text = bottom.text(0, 1, plain("\n".join(notes)), va="top", fontsize=8, color="#1d2330")
    text.set_gid("notes")
    return drawn


def plot(ax: Axes, chart: Layout) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    w, grid = chart.workload, chart.volumes
    best = chart.cheapest.key if chart.cheapest is not None else None
    numbers = {ending.option: ending.number for ending in chart.endings}
    top = LINEAR_USD
    for key, costs in chart.lines.items():
        style = chart.styles[key]
        ys = [math.nan if c is None else c for c in costs]
        fits = [y for y in ys if not math.isnan(y)]
        top = max([top, *fits])
        label = key if fits else f"{key} (does not fit)"
        if key in numbers:
            label += f" ({numbers[key]})"
        if style.note:
            label += f"\n  {style.note}"
        (line,) = ax.plot(
            grid,
            ys,
            color=style.colour,
            linestyle=(0, style.dash) if style.dash else "-",
            linewidth=CHEAPEST_WIDTH if key == best else LINE_WIDTH,
            marker=MARKERS[style.marker][0],
            markevery=list(style.marks_at),
            markersize=5,
            markeredgecolor="white",
            markeredgewidth=0.6,
            label=label,
        )
        line.set_gid(element_id(key))

    for ending in chart.endings:
        costs = chart.lines[ending.option]
        last = max(i for i, c in enumerate(costs) if c is not None and grid[i] < ending.updates)
        x, y = grid[last], costs[last]
        (end,) = ax.plot([x], [y], "|", color=chart.styles[ending.option].colour, ms=11, mew=2.2)
        end.set_gid(f"end-{element_id(ending.option)}")
        ax.annotate(
            f"({ending.number})",
            (x, y),
            xytext=(5, -3 - 9 * (ending.number % 2)),
            textcoords="offset points",
            fontsize=7,
            color=chart.styles[ending.option].colour,
            gid=f"ends-{element_id(ending.option)}",
        )
    if chart.endings:
        ax.plot([], [], "|", color="#1d2330", ms=9, mew=2, label="a line ends: (n) under the chart")

    ax.axvline(
        w.updates,
        color="#1d2330",
        linestyle=(0, (6, 3)),
        linewidth=1.2,
        label=f"your workload: {count_label(w.updates)} updates a month",
        gid="workload",
    )
    if chart.marks:
        points = ax.scatter(
            [c.updates for c in chart.marks],
            [c.monthly_usd for c in chart.marks],
            s=36,
            marker="o",
            facecolor="white",
            edgecolor="#b3261e",
            zorder=5,
            label="break-even (in full under the chart)",
        )
        points.set_gid("break-evens")
        for n, mark in enumerate(chart.marks):
            ax.annotate(
                plain(mark.label),
                (mark.updates, mark.monthly_usd),
                # Stacked in the top left, which stays empty (the costs there are the lowest
                # volumes'), each with a line to its circle: labels never cover each other.
                xytext=(0.015, 0.985 - n * LABEL_STEP),
                textcoords="axes fraction",
                va="top",
                fontsize=7,
                arrowprops={"arrowstyle": "-", "color": "#b3261e", "lw": 0.6, "shrinkB": 4},
                color="#b3261e",
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
                gid=f"break-even-{n}",
            )
    if chart.cheapest is not None:
        x, y = w.updates, chart.cheapest.monthly_usd
        ax.plot([x], [y], "o", ms=8, mfc="white", mec="#1d2330", mew=1.6, zorder=6)
        right = math.log(x / grid[0]) / math.log(grid[-1] / grid[0]) > 0.6
        ax.annotate(
            plain(chart.cheapest_label),
            (x, y),
            xytext=(-8 if right else 8, 8),
            textcoords="offset points",
            ha="right" if right else "left",
            fontsize=9,
            fontweight="bold",
            color="#1d2330",
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#1d2330", "lw": 0.8},
            zorder=7,
            gid="cheapest",
        )

    ax.set_xscale("log")
    # The linear $0 to $1 as tall as one decade above it (matplotlib's linscale counts it so).
    ax.set_yscale("symlog", linthresh=LINEAR_USD, linscale=1 - 1 / 10)
    ax.set_xlim(grid[0], grid[-1])
    high = 10 ** math.ceil(math.log10(top * 1.5))
    ax.set_ylim(0, high)
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: count_label(value)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    decades = round(math.log10(high / LINEAR_USD))
    ax.yaxis.set_major_locator(FixedLocator([0, *(LINEAR_USD * 10**d for d in range(decades + 1))]))
    ax.yaxis.set_minor_locator(FixedLocator([0.25, 0.5, 0.75]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: plain(usd_label(value))))
    ax.grid(True, which="major", color="#d5dae3", linewidth=0.8)
    ax.set_xlabel("updates a month")
    ax.set_ylabel(plain(f"monthly cost (USD; linear from $0 to ${LINEAR_USD:g}, log above)"))
    peak = f"peak {w.peak / w.rate:.3g}× the average, " if w.rate else ""
    ax.set_title(
        "Monthly hosting cost against traffic: what to pick at your volume\n"
        f"{w.ms:g} ms and {w.memory_mb} MB an update, {peak}database {w.database_gb:.2g} GB, "
        f"AWS {'with' if w.free_tier else 'without'} its free tier",
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
