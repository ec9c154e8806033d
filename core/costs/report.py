"""The cost comparison as a terminal table, JSON, CSV or Markdown, with every price's source."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from portabot.costs.model import NOT_INCLUDED, Option, Workload, break_evens, cheapest, options
from portabot.costs.prices import CURRENCY, PriceBook

FORMATS = ("table", "json", "csv", "markdown")


def compare(w: Workload, book: PriceBook, *, historical: bool = False) -> dict[str, Any]:
    """Everything a report shows: the options, the cheapest, the break-evens, the prices used."""
    found = options(w, book, historical=historical)
    best = cheapest(found)
    used = sorted({key for option in found for key in option.prices})
    return {
        "options": found,
        "cheapest": best,
        "break_evens": break_evens(w, book),
        "prices": [book[key] for key in used],
    }


def as_dict(option: Option, book: PriceBook, best: Option | None) -> dict[str, Any]:
    return {
        "target": option.target,
        "plan": option.plan,
        "monthly_usd": round(option.monthly_usd, 2),
        "currency": CURRENCY,
        "fits": option.fits,
        "why": option.why,
        "cheapest": option is best,
        "machines": option.machines,
        "includes": option.includes,
        "caveats": option.caveats,
        "latency": option.latency,
        "charges": [
            {"what": c.what, "monthly_usd": round(c.usd, 2), "detail": c.detail}
            for c in option.charges
        ],
        "prices": [
            {
                "id": key,
                "value": book[key].value,
                "currency": book[key].currency,
                "unit": book[key].unit,
                "source": book[key].source,
                "checked": book[key].checked,
            }
            for key in option.prices
        ],
    }


def render(w: Workload, book: PriceBook, fmt: str, *, historical: bool = False) -> str:
    result = compare(w, book, historical=historical)
    found: list[Option] = result["options"]
    best: Option | None = result["cheapest"]
    if fmt == "json":
        return json.dumps([as_dict(o, book, best) for o in found], indent=2, ensure_ascii=False)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["target", "plan", "monthly_usd", "fits", "why", "includes", "caveats"])
        for o in found:
            row = [o.target, o.plan, f"{o.monthly_usd:.2f}", o.fits, o.why, o.includes]
            writer.writerow([*row, "; ".join(o.caveats)])
        return out.getvalue().rstrip("\n")
    rows: list[tuple[str, ...]] = [
        (
            f"{o.key}{' (cheapest)' if o is best else ''}{'' if o.fits else ' (does not fit)'}",
            f"${o.monthly_usd:,.2f}",
            o.includes,
            "; ".join(([] if o.fits else [o.why]) + o.caveats),
        )
        for o in found
    ]
    header = ("option", f"monthly ({CURRENCY})", "includes", "caveats")
    lines = [describe_workload(w), ""]
    lines += markdown_table(header, rows) if fmt == "markdown" else text_table(header, rows)
    lines.append("")
    if best is not None:
        lines.append(f"Cheapest for this workload: {best.key}, ${best.monthly_usd:,.2f} a month.")
    for mark in result["break_evens"]:
        lines.append(f"Break-even: {mark.sentence}.")
    lines += ["", "Before the first reply:"]
    waits: dict[str, list[str]] = {}
    for o in found:
        if o.latency:
            waits.setdefault(o.latency, []).append(o.key)
    lines += [f"- {', '.join(keys)}: {latency}" for latency, keys in waits.items()]
    lines += ["", "Not included:"]
    lines += [f"- {item}" for item in NOT_INCLUDED]
    lines += ["", "Prices used (value, unit, source, when it was checked):"]
    for price in result["prices"]:
        currency = f" {price.currency}" if price.currency else ""
        value = f"{price.value:g}{currency} {price.unit}"
        lines.append(f"- {price.id}: {value} ({price.source}, {price.checked})")
    return "\n".join(lines)


def describe_workload(w: Workload) -> str:
    free = "with" if w.free_tier else "without"
    return (
        f"Workload: {w.updates:,.0f} updates a month, {w.ms:g} ms and {w.memory_mb} MB each, "
        f"peak {w.peak:.3g}/s, database {w.database_gb:.2g} GB, "
        f"{w.throughput:g} updates/s per vCPU; "
        f"AWS {free} its free tier."
    )


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    return lines


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


def render_volumes(w: Workload, volumes: list[float], book: PriceBook, fmt: str) -> str:
    """One row per option, one column per monthly volume (the peak keeps its ratio)."""
    per_volume = [(v, options(w.at(v), book)) for v in volumes]
    if fmt in ("json", "csv"):
        records = []
        for volume, found in per_volume:
            best = cheapest(found)
            for o in found:
                records.append({"updates_per_month": round(volume), **as_dict(o, book, best)})
        if fmt == "json":
            return json.dumps(records, indent=2, ensure_ascii=False)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["updates_per_month", "target", "plan", "monthly_usd", "fits"])
        for r in records:
            row = [r["updates_per_month"], r["target"], r["plan"], r["monthly_usd"], r["fits"]]
            writer.writerow(row)
        return out.getvalue().rstrip("\n")
    header = ("option", *(f"{short(v)}/month" for v, _ in per_volume))
    keys = [o.key for o in per_volume[0][1]]
    reasons: list[str] = []
    rows: list[tuple[str, ...]] = []
    for i, key in enumerate(keys):
        cells = []
        for _, found in per_volume:
            o = found[i]
            if o.fits:
                cells.append(f"${o.monthly_usd:,.2f}{' *' if o is cheapest(found) else ''}")
                continue
            why = f"{o.key}: {o.why}"
            if why not in reasons:
                reasons.append(why)
            cells.append(f"does not fit ({reasons.index(why) + 1})")
        rows.append((key, *cells))
    table = markdown_table(header, rows) if fmt == "markdown" else text_table(header, rows)
    notes = ["* the cheapest at that volume; costs in USD a month."]
    notes += [f"({n}) {why}" for n, why in enumerate(reasons, 1)]
    return "\n".join([describe_workload(w), "", *table, "", *notes])


def short(volume: float) -> str:
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if volume >= factor:
            return f"{volume / factor:g}{suffix}"
    return f"{volume:g}"
