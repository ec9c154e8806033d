"""The benchmark's smoke run, as a user runs it: `python -m bench --quick` on portabot's own
scenarios (the peers are not installed here), then the results file checked for sane figures and
read by `portabot costs --from-bench`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from portabot.costs.bench import from_bench
from tests.conftest import REQUIRE_POSTGRES

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("portabot-sqlite", "portabot-postgres", "cold-start", "round-trips", "burst")


def unavailable(reason: str) -> None:
    if REQUIRE_POSTGRES:  # in CI (CI=1) PostgreSQL and wrk are installed: missing is a failure
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory, new_postgres: Callable[[str], str]
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (apt-get install -y wrk)")
    # The bench's own database, of this run (the bench empties and migrates it).
    bench_postgres_url = new_postgres("bench")
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench", "--quick", "--only", ",".join(SCENARIOS)]
    done = subprocess.run(
        [*command, "--out", str(out), "--postgres-url", bench_postgres_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document: dict[str, Any] = json.loads((out / "latest.json").read_text())
    document["markdown"] = (out / "latest.md").read_text()
    document["chart"] = (out / "throughput.svg").read_text()
    document["path"] = out / "latest.json"
    return document


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["portabot-sqlite", "portabot-postgres"])
def test_portabot_replies_to_every_update_under_load(results: dict[str, Any], name: str) -> None:
    found = results["scenarios"][name]
    assert found["replies"]["total"] > 0 and found["replies_per_second"] > 0
    assert found["failed"] == 0 and found["socket_errors"] == 0
    assert found["not_replied_at_end"] == 0
    assert found["latency_ms"]["p50"] > 0
    assert 10 < found["memory_mb"]["vmhwm"] < 1000


@pytest.mark.postgres
def test_round_trips_and_outbound_calls_are_counted_per_update(results: dict[str, Any]) -> None:
    found = results["scenarios"]["round-trips"]
    first, ordinary, cold = found["first_contact"], found["ordinary"], found["cold"]
    assert 0 < ordinary["round_trips_per_update"] <= first["round_trips_per_update"]
    # A person the worker remembers: one statement records the update id, saves the state if
    # the person's version is still the one stepped from and keeps the inline reply. One it
    # does not: a read first.
    assert ordinary["round_trips_per_update"] == 1
    assert cold["round_trips_per_update"] == 2
    # A first contact takes the transaction (BEGIN, its statements, COMMIT), whose save keeps
    # the inline reply in the same statement.
    assert first["round_trips_per_update"] == 7
    for phase in (ordinary, cold):
        assert phase["inline_replies_per_update"] == 1  # the counter's one reply rides inline
        assert phase["outbound_calls_per_update"] == 0


@pytest.mark.postgres
def test_the_lambda_handler_answers_cold_and_warm(results: dict[str, Any]) -> None:
    for kind in ("postgres", "sqlite"):
        found = results["scenarios"]["cold-start"][kind]
        assert 0 < found["import_ms"] < found["cold_start_ms"]
        assert 0 < found["warm_ms"] < found["cold_start_ms"]


@pytest.mark.postgres
def test_the_results_file_prices_hosting(results: dict[str, Any]) -> None:
    assert results["errors"] == {}
    workload = from_bench(results["path"])
    assert set(workload) == {"ms", "memory_mb", "throughput", "init_ms"}
    judged = {goal["name"]: goal for goal in results["goals"]}
    for memory in ("the person remembered", "the person not remembered"):
        name = f"database round trips per ordinary update (PostgreSQL), {memory}"
        assert judged[name]["met"] is not None
    assert "## Goals" in results["markdown"] and "## Per update" in results["markdown"]


@pytest.mark.postgres
def test_one_persons_burst_across_four_workers_counts_every_update_once(
    results: dict[str, Any],
) -> None:
    found = results["scenarios"]["burst"]
    assert found["workers"] == 4 and found["updates"] > 0
    assert found["count"] == found["expected"]  # the bench refuses any other count too
    # Every update is one of: in one statement, locked at once, or conflicted and retried.
    parts = ("conflicts_per_1000", "locked_at_once_per_1000", "one_statement_per_1000")
    assert abs(sum(found[part] for part in parts) - 1000) < 1
    assert "One person's burst across workers" in results["markdown"]


@pytest.mark.postgres
def test_the_chart_shows_each_server_measured(results: dict[str, Any]) -> None:
    chart = results["chart"]
    assert chart.startswith("<?xml") and "<svg" in chart
    for label in ("SQLite", "PostgreSQL", "replies per second", "p99"):
        assert label in chart
    assert "](throughput.svg)" in results["markdown"]
