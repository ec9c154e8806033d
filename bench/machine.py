"""What the figures were measured on: the machine, the software, the moment."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.database import postgres_version
from bench.peers import PEERS

STACK = (
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "gunicorn",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wrk_version() -> str | None:
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
    except OSError:
        return None
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe(postgres_url: str) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": postgres_version(postgres_url),
        "wrk": wrk_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "stack": {name: _version(name) for name in STACK},
        "peers": {name: list(peer.requirements) for name, peer in PEERS.items()},
    }
