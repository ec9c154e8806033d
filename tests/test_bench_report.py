"""The bench's own arithmetic, on made-up figures: what the proxy counts on the wire, which run
stands for several, and how the goals against the peers are judged run by run."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from bench import chart, markdown, report
from bench.pgwire import BEGIN, BackendCounter, FrontendCounter
from bench.throughput import median_run

AGAINST_AIOGRAM = "portabot on PostgreSQL against aiogram"


def typed(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def error(sqlstate: str) -> bytes:
    fields = b"SERROR\0" + b"C" + sqlstate.encode() + b"\0" + b"Mthe person moved on\0\0"
    return typed(b"E", fields)


def test_the_backend_counter_reads_errors_by_sqlstate_across_chunks() -> None:
    stream = typed(b"R", struct.pack("!i", 0)) + error("PB409") + typed(b"Z", b"I") + error("23505")
    counter = BackendCounter()
    for start in range(0, len(stream), 7):  # as TCP may cut it
        counter.feed(stream[start : start + 7])
    assert counter.errors == {"PB409": 1, "23505": 1}
    assert counter.buffer == bytearray()


def test_the_frontend_counter_counts_round_trips_and_transactions_begun() -> None:
    startup = struct.pack("!ii", 8, 196608)
    stream = startup + typed(b"Q", b"BEGIN\0") + typed(b"B", b"x") + typed(b"E", b"y")
    stream += typed(b"S", b"") + typed(b"Q", b"COMMIT\0")
    counter = FrontendCounter()
    forwarded = b"".join(counter.feed(stream[i : i + 5])[0] for i in range(0, len(stream), 5))
    assert forwarded == stream
    assert counter.counts == {"Q": 2, "B": 1, "E": 1, "S": 1}
    assert counter.begins == 1 and BEGIN == "BEGIN"


def run(replies: int, p99: float = 50.0) -> dict[str, Any]:
    return {
        "replies_per_second": replies,
        "acks_per_second": replies,
        "latency_ms": {"p50": p99 / 2, "p99": p99, "max": p99 * 2},
        "cpu_ms_per_reply": 1.0,
        "replies": {"inline": replies, "api": 0, "total": replies},
        "failed": 0,
        "socket_errors": 0,
        "memory_mb": {"vmhwm": 60.0},
    }


def test_the_median_run_stands_for_the_runs_and_keeps_each() -> None:
    kept = median_run([run(900, 90), run(300, 30), run(600, 60)])
    assert kept["replies_per_second"] == 600 and kept["latency_ms"]["p99"] == 60
    assert [r["replies_per_second"] for r in kept["runs"]] == [900, 300, 600]
    assert median_run([run(5), {"error": "gone"}]) == {"error": "gone"}


def test_goals_against_a_peer_hold_only_if_every_run_meets_them(tmp_path: Path) -> None:
    ours = median_run([run(1000), run(2600), run(3000)])
    theirs = median_run([run(400), run(1000), run(1000)])
    results = {"portabot-postgres": ours, "aiogram": theirs}
    compared = report.comparison(results)["aiogram"]
    assert compared["ratios"] == [2.5, 2.6, 3.0]
    assert (compared["median"], compared["min"], compared["max"]) == (2.6, 2.5, 3.0)
    [goal] = [g for g in report.goals(results) if g["name"] == AGAINST_AIOGRAM]
    assert goal["measured"] == 2.5 and goal["met"] is True
    results["aiogram"] = median_run([run(400), run(1100), run(1000)])  # run 2: 2.36×
    [goal] = [g for g in report.goals(results) if g["name"] == AGAINST_AIOGRAM]
    assert goal["met"] is False
    document = report.document(
        results,
        {"date": "today", "cores": 2, "cpu": "c", "python": "3", "postgresql": "15"}
        | {"wrk": "wrk", "load_average_at_start": [0], "stack": {}, "peers": {}},
        {"wall_seconds": 1, "threads": 1, "connections": 32, "seconds": 10, "people": 1, "runs": 3},
    )
    text = markdown.render(document)
    assert "3 runs in turns" in text and "median 2.50×, range 2.36–3.00×" in text
    assert chart.draw(document, tmp_path / "chart.svg")
    assert "aiogram" in (tmp_path / "chart.svg").read_text()
