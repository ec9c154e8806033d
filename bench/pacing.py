"""What a send's reservation in the shared schedules costs (storage/pacing.py): many reservations
in a row on one connection, on the bot's schedule alone and on the bot's and a new chat's, beside
a bare round trip (`SELECT 1`) for scale. Run: python -m bench.pacing DATABASE_URL (a migrated
database; the rows it writes are deleted after)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

from portabot.storage.database import Database, Query
from portabot.storage.pacing import Pace, reserve

RESERVATIONS = 2000
_PING = Query("SELECT 1")
_CLEAN = Query("DELETE FROM pace WHERE scope LIKE 'bench:%'")


async def per_call(db: Database, paces: Callable[[int], list[Pace]]) -> float:
    """Milliseconds per reservation (none refused: the interval is a microsecond)."""
    started = time.perf_counter()
    for i in range(RESERVATIONS):
        await reserve(db, paces(i), time.time(), time.time() + 60)
    return (time.perf_counter() - started) / RESERVATIONS * 1e3


async def measure(url: str) -> list[str]:
    db = Database(url, pool_size=1)
    bot = Pace("bench:bot", 1e-6)
    try:
        await db.ping()
        alone = await per_call(db, lambda i: [bot])
        with_chat = await per_call(db, lambda i: [bot, Pace(f"bench:bot:{i}", 1.0, 3)])
        started = time.perf_counter()
        for _ in range(RESERVATIONS):
            async with db.autocommit() as conn:
                await conn.fetch_val(_PING)
        ping = (time.perf_counter() - started) / RESERVATIONS * 1e3
        async with db.autocommit() as conn:
            await conn.execute(_CLEAN)
    finally:
        await db.close()
    return [
        f"reservation, the bot's schedule: {alone:.3f} ms",
        f"reservation, the bot's and a new chat's: {with_chat:.3f} ms",
        f"a bare round trip (SELECT 1): {ping:.3f} ms",
    ]


if __name__ == "__main__":
    print("\n".join(asyncio.run(measure(sys.argv[1]))))
