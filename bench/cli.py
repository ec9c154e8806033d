"""`python -m bench`: every scenario in one run, results in bench/results/latest.{json,md}."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import burst, chart, coldstart, load, markdown, report, roundtrips, throughput
from bench.database import postgres_url
from bench.fake_api import FakeApi
from bench.machine import describe
from bench.peers import PEERS
from bench.processes import ROOT, BenchError, bench_environment, free_port, running
from bench.processes import wait_until_answering as wait_for

SCENARIOS = (
    *throughput.THROUGHPUT,
    *throughput.PEER_SCENARIOS,
    "cold-start",
    "peer-imports",
    "round-trips",
    "burst",
)
NEEDS_WRK = {*throughput.THROUGHPUT, *throughput.PEER_SCENARIOS}
COMPARED = ("portabot-postgres", *throughput.PEER_SCENARIOS)
"""Measured `Plan.runs` times, in turns (portabot, aiogram, ptb, portabot, …), so that what
the machine does meanwhile falls on each alike: the ratios are judged run by run."""
EXTRAS = ("asyncpg", "gunicorn", "uvicorn_worker", "mangum", "matplotlib")


@dataclass(frozen=True)
class Plan:
    """How much of each measurement a run makes (--quick makes less)."""

    seconds: float
    cold_runs: int
    warm_invocations: int
    round_trip_updates: int
    warm_up: bool
    runs: int
    burst_updates: int
    peers: bool = False
    """Whether this run measures the peers (then it installs them, and pairs with them)."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure portabot beside a bare endpoint, aiogram and python-telegram-bot: "
        "throughput and latency, cold start, round trips per update, memory.",
    )
    parser.add_argument("--seconds", type=float, help="load per throughput scenario (default 10)")
    parser.add_argument("--only", help=f"comma-separated scenarios, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (2 s loads)")
    parser.add_argument(
        "--runs",
        type=int,
        help=f"runs of each of {', '.join(COMPARED)}, in turns (default 3; --quick 1)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--postgres-url",
        default=postgres_url(),
        help="the bench's own database, emptied at each use (default $PORTABOT_BENCH_POSTGRES_URL "
        "or postgresql://postgres@127.0.0.1:5432/test_bench)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the portabot-postgres worker with py-spy"
    )
    return parser.parse_args(argv)


def selected(only: str | None) -> list[str]:
    if not only:
        return list(SCENARIOS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(
            f"bench: unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return [name for name in SCENARIOS if name in names]


def plan(args: argparse.Namespace) -> Plan:
    if args.runs is not None and not 1 <= args.runs <= 20:
        raise SystemExit("bench: --runs takes 1 to 20")
    if args.quick:
        return Plan(
            args.seconds or 2, 2, 10, 50, warm_up=False, runs=args.runs or 1, burst_updates=100
        )
    return Plan(
        args.seconds or 10, 5, 50, 500, warm_up=True, runs=args.runs or 3, burst_updates=500
    )


def scenario(name: str, setup: throughput.Setup, how: Plan, index: int) -> dict[str, Any]:
    if name in NEEDS_WRK:
        return throughput.measure(name, setup, 100_000_000 + index * 10_000_000)
    if name == "cold-start":
        # Beside python-telegram-bot's imports, run by run, when the run measures the peers.
        beside = "ptb" if how.peers else None
        return {
            kind: coldstart.lambda_cold_start(
                kind,
                setup,
                how.cold_runs,
                how.warm_invocations,
                beside if kind == "postgres" else None,
            )
            for kind in ("postgres", "sqlite")
        }
    if name == "peer-imports":
        return {peer: coldstart.peer_import(peer, setup, how.cold_runs) for peer in PEERS}
    if name == "burst":
        return burst.measure(setup, how.burst_updates)
    return roundtrips.measure(setup, how.round_trip_updates)


def one_line(name: str, found: dict[str, Any]) -> str:
    if "error" in found:
        return f"bench: {name}: ERROR {found['error'].splitlines()[0]}"
    if "acks_per_second" in found:
        replies = found.get("replies_per_second")
        tail = f", {replies:,} replies/s" if replies else ""
        p99 = found["latency_ms"]["p99"]
        return f"bench: {name}: {found['acks_per_second']:,} acks/s{tail}, p99 {p99:.1f} ms"
    return f"bench: {name}: done"


def run_one(name: str, setup: throughput.Setup, how: Plan, index: int) -> dict[str, Any]:
    print(f"bench: {name} …", flush=True)
    started = time.monotonic()
    try:
        found = scenario(name, setup, how, index)
    except BenchError as exc:
        found = {"error": str(exc)}
    except Exception as exc:
        found = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"}
    found["wall_seconds"] = round(time.monotonic() - started, 1)
    print(one_line(name, found), flush=True)
    return found


def run_all(names: list[str], setup: throughput.Setup, how: Plan) -> dict[str, dict[str, Any]]:
    """Every scenario once, those COMPARED `how.runs` times in turns after the rest; each of
    those is then shown by its median run (by replies/s), with every run kept in `runs`."""
    results: dict[str, dict[str, Any]] = {}
    compared = [name for name in names if name in COMPARED]
    for index, name in enumerate(names):
        if name not in compared:
            results[name] = run_one(name, setup, how, index)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in compared}
    for turn in range(how.runs):
        for name in compared:
            index = len(names) + turn * len(compared) + compared.index(name)
            runs[name].append(run_one(name, setup, how, index))
    for name, measured in runs.items():
        results[name] = throughput.median_run(measured)
    return {name: results[name] for name in names}


def with_fake_api(
    workdir: Path, body: Callable[[FakeApi], dict[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    port = free_port()
    command = [sys.executable, "-m", "bench.fake_api", str(port)]
    log = workdir / "fake-api.log"
    with running("fake Bot API", command, log=log, env=bench_environment()) as process:
        fake = FakeApi(f"http://127.0.0.1:{port}")
        wait_for(fake.url + "/stats", process)
        return body(fake)


def require_extras() -> None:
    """The servers and drivers the bench runs portabot with: the project's optional extras."""
    missing = [name for name in EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"bench: {', '.join(missing)} missing; install them with "
            f"{Path(sys.executable).parent / 'pip'} install -e '.[postgres,server,lambda]'"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    names = selected(args.only)
    require_extras()
    how = dataclasses.replace(plan(args), peers="peer-imports" in names)
    if NEEDS_WRK & set(names):
        load.ensure_wrk()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="portabot-bench-"))
    machine = describe(args.postgres_url)

    def measure(fake: FakeApi) -> dict[str, dict[str, Any]]:
        setup = throughput.Setup(
            workdir, fake, how.seconds, args.postgres_url, how.warm_up, args.profile
        )
        return run_all(names, setup, how)

    results = with_fake_api(workdir, measure)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    settings = {
        "seconds": how.seconds,
        "quick": args.quick,
        "threads": load.THREADS,
        "connections": load.CONNECTIONS,
        "people": load.PEOPLE,
        "runs": how.runs,
        "scenarios": names,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    document = report.document(results, machine, settings)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    text = markdown.render(document)
    (args.out / "latest.md").write_text(text)
    chart.draw(document, args.out / chart.NAME)
    print(text)
    print(
        f"bench: wrote {args.out / 'latest.json'}, latest.md and {chart.NAME}"
        f" in {settings['wall_seconds']:.0f} s"
    )
    if document["errors"]:
        print(f"bench: {len(document['errors'])} scenario(s) failed; logs kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0
