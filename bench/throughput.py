"""Throughput and latency: each server, one worker, under wrk's load on loopback, replying to a
fake Bot API in a process of its own; replies counted in the webhook responses and at the fake."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import profile
from bench.database import fresh_postgres, fresh_sqlite
from bench.fake_api import ApiStats, FakeApi
from bench.load import Load, run_wrk, write_script
from bench.peers import PEERS, ensure_installed
from bench.processes import (
    ROOT,
    BenchError,
    Process,
    bench_environment,
    children,
    cpu_seconds,
    free_port,
    memory_mb,
    running,
    wait_until_answering,
)

TOKEN = "123456:BENCH-token-not-a-secret-abcdefghij"
SECRET = "bench-webhook-secret"
WEBHOOK = "/webhooks/telegram"
GUNICORN_CONFIG = ROOT / "targets" / "vps" / "gunicorn.conf.py"
COUNTER_FLOW = "examples.counter:flow"
THROUGHPUT = ("fake-api", "ceiling", "inline", "portabot-sqlite", "portabot-postgres")
PEER_SCENARIOS = tuple(PEERS)


@dataclass(frozen=True)
class Setup:
    """What every scenario of a run shares."""

    workdir: Path
    fake: FakeApi
    seconds: float
    postgres_url: str
    warm_up: bool
    profile: bool


@dataclass(frozen=True)
class Served:
    url: str
    path: str
    process: Process
    worker: int
    """The pid that serves the requests (gunicorn's one worker, or the peer's process)."""


def portabot_environment(database_url: str, api_url: str, **values: str) -> dict[str, str]:
    return bench_environment(
        DATABASE_URL=database_url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=api_url,
        BOT_FLOW=COUNTER_FLOW,
        SESSION_SECRET="bench-session-secret",
        **values,
    )


@contextmanager
def gunicorn(
    name: str, setup: Setup, env: dict[str, str], app: str | None = None, *, workers: int = 1
) -> Iterator[Served]:
    """The VPS unit's gunicorn (targets/vps/gunicorn.conf.py) with `workers` uvicorn workers
    (`Served.worker`: the first)."""
    port = free_port()
    env = {**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)}
    gunicorn_bin = str(Path(sys.executable).parent / "gunicorn")
    command = [gunicorn_bin, "--config", str(GUNICORN_CONFIG), *([app] if app else [])]
    with running(name, command, log=setup.workdir / f"{name}.log", env=env) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url + ("/healthz" if app is None else WEBHOOK), process)
        found = children(process.pid)
        deadline = time.monotonic() + 30
        while len(found) < workers and time.monotonic() < deadline:  # the others still forking
            time.sleep(0.1)
            found = children(process.pid)
        if len(found) != workers:
            raise BenchError(f"{name}: expected {workers} gunicorn workers, found {len(found)}")
        yield Served(url, WEBHOOK, process, found[0])


@contextmanager
def peer(name: str, setup: Setup) -> Iterator[Served]:
    bot = PEERS[name]
    python = ensure_installed(bot)
    port = free_port()
    command = [str(python), str(bot.bot), str(port), setup.fake.url, TOKEN, SECRET]
    env = bench_environment()
    with running(name, command, log=setup.workdir / f"{name}.log", env=env) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url + "/webhook", process)
        yield Served(url, "/webhook", process, process.pid)


@contextmanager
def served(name: str, setup: Setup) -> Iterator[Served]:
    if name in ("ceiling", "inline"):
        with gunicorn(name, setup, bench_environment(), f"bench.apps:{name}") as server:
            yield server
    elif name == "portabot-sqlite":
        url = fresh_sqlite(setup.workdir, name)
        with gunicorn(name, setup, portabot_environment(url, setup.fake.url)) as server:
            yield server
    elif name == "portabot-postgres":
        fresh_postgres(setup.postgres_url)
        env = portabot_environment(setup.postgres_url, setup.fake.url)
        with gunicorn(name, setup, env) as server:
            yield server
    elif name in PEERS:
        with peer(name, setup) as server:
            yield server
    else:
        raise BenchError(f"no such scenario: {name}")


def drain(fake: FakeApi, limit: float) -> ApiStats:
    """Wait until the fake stops receiving replies (background work after the load), at most
    `limit` seconds."""
    deadline = time.monotonic() + limit
    stats = fake.stats()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = fake.stats()
        if now.sent == stats.sent:
            return now
        stats = now
    return stats


def hit(server: Served, setup: Setup, first_update: int, seconds: float) -> Load:
    """wrk on `server` for `seconds`, its update ids counting from `first_update`."""
    script = write_script(setup.workdir, path=server.path, secret=SECRET, first_update=first_update)
    return run_wrk(server.url + server.path, script, seconds)


def measure(name: str, setup: Setup, first_update: int) -> dict[str, Any]:
    if name == "fake-api":
        return measure_fake(setup, first_update)
    with served(name, setup) as server:
        if setup.warm_up:  # connections, caches and prepared statements made before we count
            hit(server, setup, first_update + 5_000_000, 1)
            drain(setup.fake, 10)
        setup.fake.reset()
        cpu = cpu_seconds(server.worker)
        load = hit(server, setup, first_update, setup.seconds)
        memory = memory_mb(server.worker)
        api = drain(setup.fake, max(5.0, 2 * setup.seconds))
        cpu = cpu_seconds(server.worker) - cpu
        server.process.check_alive()
        result = summarise(load, api, memory)
        replies = result["replies"]["total"]
        # What each reply cost the worker: CPU time, which a busy neighbour slows but does
        # not add to, unlike the wall clock that replies/s and latency are read from.
        result["cpu_ms_per_reply"] = round(1000 * cpu / replies, 3) if replies else None
        sampled = profile.profiled(
            name,
            server.worker,
            setup,
            lambda: hit(server, setup, first_update + 7_000_000, setup.seconds),
        )
    if sampled is not None:
        result["profile"] = sampled
    return result


def measure_fake(setup: Setup, first_update: int) -> dict[str, Any]:
    """The fake Bot API's own capacity: it must be far above any bot's replies/s."""
    path = f"/bot{TOKEN}/sendMessage"
    script = write_script(
        setup.workdir, path=path, secret="", first_update=first_update, kind="send"
    )
    load = run_wrk(setup.fake.url + path, script, setup.seconds)
    setup.fake.reset()
    return {
        "acks_per_second": round(load.acks_per_second),
        "requests": load.requests,
        "failed": load.failed,
        "socket_errors": load.socket_errors,
        "latency_ms": latency(load),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median replies/s (of an even number, the lower middle one), and in
    `runs` what each run measured; the first failed run if any did."""
    failed = [run for run in runs if "error" in run]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda run: run["replies_per_second"])
    kept = [
        {
            "replies_per_second": run["replies_per_second"],
            "acks_per_second": run["acks_per_second"],
            "p99_ms": run["latency_ms"]["p99"],
            "cpu_ms_per_reply": run.get("cpu_ms_per_reply"),
        }
        for run in runs
    ]
    return {**ordered[(len(ordered) - 1) // 2], "runs": kept}


def latency(load: Load) -> dict[str, float]:
    return {"p50": load.p50_ms, "p99": load.p99_ms, "max": load.max_ms}


def summarise(load: Load, api: ApiStats, memory: dict[str, float]) -> dict[str, Any]:
    """Replies/s = replies counted / time between the first and last reply: replies in webhook
    responses come while wrk runs, replies at the fake may come later (background work)."""
    starts, ends = [], []
    if load.inline_replies:
        starts.append(load.started)
        ends.append(load.ended)
    if api.sent:
        starts.append(api.first)
        ends.append(api.last)
    replies = load.inline_replies + api.sent
    window = max(ends) - min(starts) if starts else 0.0
    return {
        "acks_per_second": round(load.acks_per_second),
        "replies_per_second": round(replies / window) if window > 0 else 0,
        "replies": {"inline": load.inline_replies, "api": api.sent, "total": replies},
        "requests": load.requests,
        "acked": load.ok,
        "failed": load.failed,
        "socket_errors": load.socket_errors,
        "not_replied_at_end": max(0, load.ok - replies),
        "outbound_calls_per_update": round(api.total / load.ok, 3) if load.ok else None,
        "latency_ms": latency(load),
        "seconds": round(load.seconds, 2),
        "reply_window_seconds": round(window, 2),
        "memory_mb": memory,
    }
