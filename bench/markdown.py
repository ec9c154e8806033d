"""The results file as markdown: throughput and latency, cold start, per update, goals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bench import chart

THROUGHPUT_ROWS = {
    "fake-api": "fake Bot API alone (its capacity; wrk posts sendMessage)",
    "ceiling": 'bare Starlette endpoint: parses the JSON, answers "ok" (the ceiling)',
    "inline": "Starlette, reply in the webhook body (no DB)",
    "portabot-sqlite": "**portabot** on SQLite (`portabot.app:app`, counter flow)",
    "portabot-postgres": "**portabot** on PostgreSQL (`portabot.app:app`, counter flow)",
    "aiogram": "aiogram 3 echo (aiohttp webhook, handles in background)",
    "ptb": "python-telegram-bot 22 echo (run_webhook, update queue)",
}
THROUGHPUT_HEADER = (
    "server (one worker)",
    "webhook acks/s",
    "replies/s",
    "p50",
    "p99",
    "worker CPU per reply",
    "replies (inline + API)",
    "not replied at end",
    "errors",
    "worker RSS peak",
)
COLD_HEADER = (
    "fresh interpreter",
    "spawn → first reply (peers: → imported)",
    "of which import",
    "first update",
    "warm handler, median (p90)",
    "peak RSS",
)
PER_UPDATE_HEADER = (
    "update (PostgreSQL, one at a time)",
    "DB round trips",
    "client messages by type",
    "outbound API calls",
    "replies inline",
    "median time (via the proxy)",
)
DATABASES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}

PHASES = {
    "first_contact": "first contact of a new person",
    "ordinary": "ordinary update of a known person (the worker remembers them)",
    "cold": "ordinary update of a person the worker has not seen",
}


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def number(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}{'' if unit == '×' else ' '}{unit}".rstrip()
    return str(value)


def section(title: str, rows: list[list[Any]], header: Sequence[str]) -> list[str]:
    return ["", f"## {title}", "", *table(header, rows)] if rows else []


def throughput_row(name: str, found: dict[str, Any]) -> list[Any]:
    title = THROUGHPUT_ROWS[name]
    if "error" in found:
        return [title, "error", *["—"] * (len(THROUGHPUT_HEADER) - 2)]
    bot = name not in ("fake-api", "ceiling")
    replies = found.get("replies") or {}
    return [
        title,
        number(found["acks_per_second"]),
        number(found.get("replies_per_second")) if bot else "—",
        number(found["latency_ms"]["p50"], 1, "ms"),
        number(found["latency_ms"]["p99"], 1, "ms"),
        number(found.get("cpu_ms_per_reply"), 3, "ms") if bot else "—",
        f"{replies.get('inline', 0):,} + {replies.get('api', 0):,}" if bot else "—",
        number(found.get("not_replied_at_end")) if bot else "—",
        number(found["failed"] + found["socket_errors"]),
        number((found.get("memory_mb") or {}).get("vmhwm"), 1, "MB"),
    ]


def cold_start_rows(scenarios: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for kind, found in (scenarios.get("cold-start") or {}).items():
        if kind in DATABASES and "cold_start_ms" in found:
            rows.append(
                [
                    f"portabot's Lambda handler, first update, {DATABASES[kind]}",
                    number(found["cold_start_ms"], 0, "ms"),
                    number(found["import_ms"], 0, "ms"),
                    number(found["first_update_ms"], 0, "ms"),
                    f"{number(found['warm_ms'], 2, 'ms')} ({number(found['warm_p90_ms'], 2)})",
                    number(found["max_rss_mb"], 0, "MB"),
                ]
            )
    for name, found in (scenarios.get("peer-imports") or {}).items():
        if isinstance(found, dict) and "import_ms" in found:
            imported = number(found["import_ms"], 0, "ms")
            memory = number(found["max_rss_mb"], 0, "MB")
            rows.append([f"{name}: `{found['import']}`", imported, imported, "—", "—", memory])
    return rows


def per_update_rows(scenarios: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for phase, title in PHASES.items():
        row = (scenarios.get("round-trips") or {}).get(phase)
        if row is not None:
            messages = ", ".join(f"{k} {v:g}" for k, v in row["messages_per_update"].items())
            rows.append(
                [
                    title,
                    number(row["round_trips_per_update"], 2),
                    messages,
                    number(row["outbound_calls_per_update"], 2),
                    number(row["inline_replies_per_update"], 2),
                    number(row["median_ms"], 2, "ms"),
                ]
            )
    return rows


BURST_HEADER = (
    "updates of one person, at once",
    "workers (connections)",
    "conflicts per 1,000 (each retried once, under the lock)",
    "took the lock at once, per 1,000 (contended)",
    "in one statement, per 1,000",
    "updates/s",
    "count at the end",
)


def burst_rows(scenarios: dict[str, Any]) -> list[list[Any]]:
    found = scenarios.get("burst")
    if not found or "error" in found:
        return []
    return [
        [
            number(found["updates"]),
            f"{found['workers']} ({found['connections']})",
            number(found["conflicts_per_1000"], 1),
            number(found["locked_at_once_per_1000"], 1),
            number(found["one_statement_per_1000"], 1),
            number(found["updates_per_second"]),
            f"{found['count']:,} of {found['expected']:,}",
        ]
    ]


def _run(run: dict[str, Any]) -> str:
    cpu = run.get("cpu_ms_per_reply")
    spent = f"; {cpu:.2f} ms" if cpu is not None else ""
    return f"{run['replies_per_second']:,} ({run['p99_ms']:.0f} ms{spent})"


def turns(document: dict[str, Any]) -> list[str]:
    """Each turn's replies/s of portabot on PostgreSQL and the peers, and the ratios."""
    scenarios, compared = document["scenarios"], document.get("comparison") or {}
    ours = (scenarios.get("portabot-postgres") or {}).get("runs") or []
    peers = [peer for peer in ("aiogram", "ptb") if peer in compared]
    if len(ours) < 2 or not peers:
        return []
    header = ["run", "portabot on PostgreSQL, replies/s (p99; CPU per reply)"]
    for peer in peers:
        header += [f"{peer}, replies/s (p99; CPU per reply)", f"ratio to {peer}"]
    rows = []
    for turn, run in enumerate(ours):
        row = [str(turn + 1), _run(run)]
        for peer in peers:
            theirs = scenarios[peer]["runs"]
            if turn < len(theirs):
                row += [_run(theirs[turn]), f"{compared[peer]['ratios'][turn]:.2f}×"]
        rows.append(row)
    summary = "; ".join(
        f"against {peer}: median {compared[peer]['median']:.2f}×, range "
        f"{compared[peer]['min']:.2f}–{compared[peer]['max']:.2f}×"
        for peer in peers
    )
    return [
        "",
        f"## Against the peers, run by run ({len(ours)} runs in turns)",
        "",
        *table(header, rows),
        "",
        f"Ratios of replies/s {summary}.",
    ]


def margin(goal: dict[str, Any]) -> str:
    ratio, met = goal.get("ratio"), goal.get("met")
    if met is None:
        return "not measured"
    if ratio is None:
        return "met" if met else "missed"
    if round(ratio, 2) == 1:
        return "met, at the limit" if met else "missed, at the limit"
    if "≥" in goal["target"]:
        change = (ratio - 1) * 100
        return f"met, {change:.0f}% above" if met else f"missed, {-change:.0f}% short"
    change = (1 - ratio) * 100
    return f"met, {change:.0f}% below" if met else f"missed, {-change:.0f}% over"


def goal_rows(goals: list[dict[str, Any]]) -> list[list[Any]]:
    marks = {True: "✅ met", False: "❌ missed", None: "—"}
    return [
        [g["name"], g["target"], number(g["measured"], 2, g["unit"]), marks[g["met"]], margin(g)]
        for g in goals
    ]


def profile(scenarios: dict[str, Any]) -> list[str]:
    found = (scenarios.get("portabot-postgres") or {}).get("profile")
    if not found or "own" not in found:
        return []
    title = f"Where the portabot-postgres worker's CPU goes (py-spy, {found['samples']:,} samples)"
    lines = ["", f"## {title}"]
    for kind, what in (
        ("own", "function (samples in it, not below)"),
        ("packages", "package (of the function on top)"),
        ("core", "portabot's functions (samples in them and below)"),
    ):
        rows = [[f"`{e['function']}`", f"{e['percent']}%"] for e in found[kind]]
        lines += ["", *table([what, "share of samples"], rows)]
    return lines


def preamble(machine: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    start = ", ".join(str(x) for x in machine["load_average_at_start"])
    end = ", ".join(str(x) for x in machine.get("load_average_at_end", []))
    stack = ", ".join(f"{name} {version}" for name, version in machine["stack"].items() if version)
    peers = ", ".join(pin for pins in machine["peers"].values() for pin in pins)
    return [
        "# portabot benchmark",
        "",
        f"{machine['date']}; {machine['cpu']}, {machine['cores']} cores; "
        f"Python {machine['python']}; PostgreSQL {machine['postgresql'] or '—'}; "
        f"{machine['wrk'] or 'wrk'}; load average {start} at the start, {end} at the end; "
        f"the whole run took {settings['wall_seconds']:.0f} s. wrk, each server, the fake Bot "
        "API and PostgreSQL share these cores: read the figures as ratios within this run.",
        "",
        f"Load: wrk, {settings['threads']} thread, {settings['connections']} connections, "
        f"{settings['seconds']:g} s per server, Telegram updates with distinct update_ids from "
        f"{settings['people']:,} people, the secret header on each. Replies/s = replies "
        "counted (in webhook responses and at the fake Bot API) / time between the first "
        "and the last reply. portabot on PostgreSQL and the peers are measured "
        f"{settings.get('runs', 1)} time(s) each, in turns; the table shows each one's median "
        "run.",
        "",
        f"Versions: {stack}; peers {peers}.",
    ]


def render(document: dict[str, Any]) -> str:
    scenarios = document["scenarios"]
    throughput = [
        throughput_row(name, scenarios[name]) for name in THROUGHPUT_ROWS if name in scenarios
    ]
    lines = [
        *preamble(document["machine"], document["settings"]),
        *section("Throughput and latency", throughput, THROUGHPUT_HEADER),
        *(["", f"![replies/s and p99 of each server]({chart.NAME})"] if throughput else []),
        *turns(document),
        *section("Cold start and warm invocations", cold_start_rows(scenarios), COLD_HEADER),
        *section("Per update", per_update_rows(scenarios), PER_UPDATE_HEADER),
        *section("One person's burst across workers", burst_rows(scenarios), BURST_HEADER),
        *section(
            "Goals",
            goal_rows(document["goals"]),
            ("goal", "target", "measured", "met", "by how much"),
        ),
    ]
    for check in document.get("checks", []):
        verdict = "yes" if check["met"] else "NO"
        lines += ["", f"Check, {check['name']}: {check['measured']:g}× ({verdict})."]
    if document.get("errors"):
        lines += ["", "## Errors", ""]
        lines += [
            f"- {name}: {error.splitlines()[0]}" for name, error in document["errors"].items()
        ]
    return "\n".join([*lines, *profile(scenarios)]) + "\n"
