"""Where portabot's worker spends its CPU under load (--profile): py-spy, installed into
bench/.venvs/tools, samples the portabot-postgres worker during a second load after the measured
one; the collapsed stacks are summed by the function on top of each, by its package, and over
portabot's own functions."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.peers import Peer, ensure_installed

if TYPE_CHECKING:
    from bench.throughput import Setup

PROFILED = "portabot-postgres"
TOP = 15
PY_SPY = Peer("tools", ("py-spy==0.4.3",), "", "")


def profiled(
    name: str, pid: int, setup: Setup, load: Callable[[], object]
) -> dict[str, Any] | None:
    """When profiling was asked for this scenario: `load` run again (after the measured one, so
    that sampling does not slow what was measured) with py-spy sampling `pid` meanwhile."""
    if not setup.profile or name != PROFILED:
        return None
    py_spy = ensure_installed(PY_SPY).parent / "py-spy"
    output = setup.workdir / f"{name}.stacks"
    command = [str(py_spy), "record", "--pid", str(pid), "--duration", str(round(setup.seconds))]
    command += ["--rate", "200", "--format", "raw", "--output", str(output)]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        load()
    finally:
        _, errors = recorder.communicate(timeout=setup.seconds + 60)
    if recorder.returncode != 0 or not output.exists():
        return {"error": errors.decode(errors="replace").strip()[-300:]}
    return summarise(output)


def _frame(raw: str) -> str:
    """`function (path:line)` → `function (package/module.py)`, lines merged."""
    function, _, where = raw.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    for marker in (
        "site-packages/",
        f"/lib/python{sys.version_info[0]}.{sys.version_info[1]}/",
        "/work/main/",
    ):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{function} ({path})" if path else function


def _package(frame: str) -> str:
    """`function (asyncpg/connection.py)` → `asyncpg`; the standard library's modules by name."""
    path = frame.rpartition(" (")[2].rstrip(")")
    top = path.split("/", 1)[0]
    return top.removesuffix(".py") or "?"


def summarise(stacks: Path) -> dict[str, Any]:
    """The functions with the most samples of their own; the samples of each package; and
    portabot's own functions by the samples in them and below (the pipeline's stages)."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    samples = 0
    for line in stacks.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(frame) for frame in stack.split(";") if "(" in frame]
        if not frames or not count.isdigit():
            continue
        samples += int(count)
        own[frames[-1]] += int(count)
        packages[_package(frames[-1])] += int(count)
        for frame in set(frames):
            if _package(frame) == "portabot":
                ours[frame] += int(count)

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": f, "samples": n, "percent": round(100 * n / samples, 1)}
            for f, n in counter.most_common(TOP)
        ]

    return {"samples": samples, "own": top(own), "packages": top(packages), "core": top(ours)}
