"""Counters of what strangers may ask for (web chat messages, new visitors, wrong link codes),
kept in the database so that every worker, dyno and Lambda container shares them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from core.storage.database import Conn, Database, Query


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `most` hits on `key` in each fixed window of `seconds`."""

    key: str
    most: int
    seconds: float

    def window(self, now: float) -> float:
        return math.floor(now / self.seconds) * self.seconds


@cache
def _hit(count: int) -> Query:
    # One statement whatever the number of keys; a key's row starts again at 1 in a new window.
    # Rows are locked in the order given, so callers list keys in one order (no deadlock).
    rows = ", ".join(f"(:key{i}, :window{i}, 1)" for i in range(count))
    return Query(
        f"INSERT INTO limits (key, window_start, count) VALUES {rows}"
        " ON CONFLICT (key) DO UPDATE SET"
        " count = CASE WHEN limits.window_start = excluded.window_start"
        " THEN limits.count + 1 ELSE 1 END,"
        " window_start = excluded.window_start"
        " RETURNING key, count"
    )


_UNHIT = Query(
    "UPDATE limits SET count = count - 1 WHERE key = :key AND window_start = :window AND count > 0"
)


async def hit(conn: Conn, limits: Sequence[Limit], now: float) -> tuple[Limit, float] | None:
    """Count one hit on every limit (refused hits count too: a flood stays refused). Returns
    the limit that is over with the longest wait, and the seconds until its window ends; None
    when none is over."""
    params: dict[str, object] = {}
    for i, limit in enumerate(limits):
        params[f"key{i}"] = limit.key
        params[f"window{i}"] = limit.window(now)
    counts = {row["key"]: row["count"] for row in await conn.fetch_all(_hit(len(limits)), **params)}
    over = [
        (limit, limit.window(now) + limit.seconds - now)
        for limit in limits
        if counts.get(limit.key, 0) > limit.most
    ]
    return max(over, key=lambda found: found[1]) if over else None


async def hit_now(db: Database, limits: Sequence[Limit], now: float) -> tuple[Limit, float] | None:
    """`hit` in a statement of its own that commits at once, so that a counter every request
    shares (the total) is locked for one statement, not for a whole update's transaction."""
    async with db.autocommit() as conn:
        return await hit(conn, limits, now)


async def unhit(conn: Conn, limit: Limit, now: float) -> None:
    """Take back a hit that turned out not to count (a right link code)."""
    await conn.execute(_UNHIT, key=limit.key, window=limit.window(now))
