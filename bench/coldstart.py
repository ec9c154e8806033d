"""Cold start: a fresh interpreter loads the Lambda handler and answers its first Telegram update,
database connection included (wall time from spawn to the reply, median of several runs), beside
the imports a bot on each peer framework starts with; then warm invocations in the same process."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.database import fresh_postgres, fresh_sqlite
from bench.peers import PEERS, ensure_installed
from bench.processes import ROOT, BenchError, bench_environment
from bench.throughput import SECRET, Setup, portabot_environment

HANDLER = ROOT / "targets" / "lambda" / "handler.py"
PROBE = Path(__file__).with_name("lambda_probe.py")
FIRST_UPDATE = 700_000_000
FIRST_USER = 5_900_000_000


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def _spawn(
    what: str, command: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, dict[str, Any]]:
    """Run `command`; returns when it was spawned and the JSON its last line printed."""
    spawned = time.monotonic()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"{what} failed: {done.stderr.strip()[-400:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    return spawned, found


def lambda_cold_start(
    kind: str, setup: Setup, runs: int, warm: int, beside: str | None = None
) -> dict[str, Any]:
    """`runs` cold starts (after one that only compiles bytecode), each a new person's update,
    then `warm` updates of that person in the same process. With `beside`, a peer: its imports
    after each cold start, so that the two are compared run by run (`paired`)."""
    peer = _import_command(beside) if beside else None
    paired: list[float] = []
    container = setup.workdir / f"lambda-{kind}"  # Lambda's working directory: no .env there
    container.mkdir(exist_ok=True)
    if kind == "postgres":
        fresh_postgres(setup.postgres_url)
        env = portabot_environment(setup.postgres_url, setup.fake.url)
        env["AWS_LAMBDA_FUNCTION_NAME"] = "portabot"
    else:  # the handler refuses SQLite when it sees it is on Lambda: here it does not
        env = portabot_environment(fresh_sqlite(setup.workdir, "lambda"), setup.fake.url)
    env["PYTHONPATH"] = str(ROOT)  # BOT_FLOW=examples.counter:flow, shipped with --include
    compile_modules()
    starts, imports, warm_ms, rss = [], [], [], []
    for run in range(runs + 1):
        update = FIRST_UPDATE + run * 1_000
        command = [sys.executable, str(PROBE), str(HANDLER), str(update), str(FIRST_USER + run)]
        command += [str(warm if run else 0), SECRET]
        spawned, found = _spawn(f"the Lambda handler on {kind}", command, env, container)
        if found["first_status"] != 200 or found["failures"]:
            raise BenchError(f"lambda on {kind}: {found['failures']} updates got no reply")
        if run == 0:
            continue  # the first run reads the files into the page cache
        starts.append((found["replied"] - spawned) * 1000)
        imports.append((found["imported"] - spawned) * 1000)
        if peer is not None:
            spawned, imported = _spawn(f"{beside}'s import", peer, bench_environment(), container)
            paired.append((imported["imported"] - spawned) * 1000)
        warm_ms.extend(found["warm_ms"])
        rss.append(found["max_rss_mb"])
    measured: dict[str, Any] = {}
    if paired:
        ratios = [start / other for start, other in zip(starts, paired, strict=True)]
        measured["paired"] = {
            "peer": beside,
            "import_ms": _median(paired),
            "ratio": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
        }
    return {
        **measured,
        "cold_start_ms": _median(starts),
        "import_ms": _median(imports),
        "first_update_ms": _median([s - i for s, i in zip(starts, imports, strict=True)]),
        "cold_start_runs_ms": [round(s, 1) for s in starts],
        "warm_ms": _median(warm_ms),
        "warm_p90_ms": round(statistics.quantiles(warm_ms, n=10)[-1], 2),
        "warm_invocations": len(warm_ms),
        "max_rss_mb": max(rss),
    }


def compile_modules() -> None:
    """Write the bytecode of the handler, portabot and the bench's flow, as `portabot package
    lambda` puts it in the zip: Lambda's task directory is read-only, so a container compiles
    nothing it is not given compiled, and neither does a probe run where PYTHONDONTWRITEBYTECODE
    is set. The peers' modules were compiled by pip when it installed them."""
    folders = [ROOT / "core", HANDLER.parent, ROOT / "examples"]
    command = [sys.executable, "-m", "compileall", "-qq", *map(str, folders)]
    if subprocess.run(command, capture_output=True, text=True).returncode != 0:
        raise BenchError(f"compileall failed on {', '.join(map(str, folders))}")


IMPORT_PROBE = (
    "import time, resource; {imports}; "
    'print(\'{{"imported": %r, "max_rss_mb": %r}}\' % (time.monotonic(), '
    "round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6, 1)))"
)


def peer_import(name: str, setup: Setup, runs: int) -> dict[str, Any]:
    """Spawn to the end of the peer's imports, the same way (median of `runs`, after one)."""
    command = _import_command(name)
    times, rss = [], []
    for run in range(runs + 1):
        spawned, found = _spawn(f"{name}'s import", command, bench_environment(), setup.workdir)
        if run:
            times.append((found["imported"] - spawned) * 1000)
            rss.append(found["max_rss_mb"])
    return {"import": PEERS[name].imports, "import_ms": _median(times), "max_rss_mb": max(rss)}


def _import_command(name: str) -> list[str]:
    peer = PEERS[name]
    return [str(ensure_installed(peer)), "-c", IMPORT_PROBE.format(imports=peer.imports)]
