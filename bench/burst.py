"""One person's burst across four workers, on PostgreSQL: what the one-statement path costs when
workers race on one person. Every connection first sends one update of the person, one after
another (so that each worker that serves a connection remembers them, at a version the others
then move on), then all send theirs at once. Counted through the proxy: the statements that
found the person moved on (PB409: a conflict, nothing of it kept, and the update stepped again
under the lock, a retry), the transactions begun (the retries, and the updates of a contended
person that take the lock without trying), and the person's count at the end, which must be
exactly the number of updates."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import database
from bench.database import address, fresh_postgres, with_address
from bench.pgwire import BEGIN, counting_proxy
from bench.processes import BenchError
from bench.roundtrips import Sender, connect
from bench.throughput import Setup, gunicorn, portabot_environment

WORKERS = 4
CONNECTIONS = 16
FIRST_UPDATE = 900_000_000
USER = 6_200_000_000
MOVED = "PB409"


def measure(setup: Setup, updates: int) -> dict[str, Any]:
    fresh_postgres(setup.postgres_url)
    with counting_proxy(address(setup.postgres_url)) as proxy:
        database_url = with_address(setup.postgres_url, "127.0.0.1", proxy.port)
        # No tick: what the proxy counts is the updates' own work.
        env = portabot_environment(database_url, setup.fake.url, TICK_SECONDS="0")
        with gunicorn("burst", setup, env, workers=WORKERS) as server:
            share = -(-updates // CONNECTIONS)
            senders = [
                Sender(connect(server.url), FIRST_UPDATE + i * (share + 1))
                for i in range(CONNECTIONS)
            ]
            for sender in senders:  # one at a time: the person made, and remembered
                sender.send(USER)
            before = proxy.events_snapshot()
            counts = [min(share, updates - i * share) for i in range(CONNECTIONS)]
            start = threading.Barrier(CONNECTIONS)

            def burst(sender: Sender, count: int) -> None:
                start.wait()
                for _ in range(count):
                    sender.send(USER)

            started = time.perf_counter()
            with ThreadPoolExecutor(CONNECTIONS) as pool:
                for done in [
                    pool.submit(burst, s, n) for s, n in zip(senders, counts, strict=True)
                ]:
                    done.result()
            seconds = time.perf_counter() - started
            events = proxy.events_snapshot() - before
            for sender in senders:
                sender.connection.close()
            server.process.check_alive()
    count = asyncio.run(_count(setup.postgres_url))
    expected = updates + CONNECTIONS
    if count != expected:
        raise BenchError(f"burst: the person's count is {count}, not {expected}")
    conflicts, locked = events[MOVED], events[BEGIN]
    return {
        "updates": updates,
        "workers": WORKERS,
        "connections": CONNECTIONS,
        "conflicts_per_1000": round(1000 * conflicts / updates, 1),  # each retried once, locked
        "locked_at_once_per_1000": round(1000 * max(0, locked - conflicts) / updates, 1),
        "one_statement_per_1000": round(1000 * max(0, updates - locked) / updates, 1),
        "updates_per_second": round(updates / seconds),
        "count": count,
        "expected": expected,
    }


async def _count(url: str) -> int:
    conn = await database.connect(url)
    try:
        data = await conn.fetchval("SELECT data FROM people")
    finally:
        await conn.close()
    return int(json.loads(data)["count"])
