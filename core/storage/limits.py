"""Counters of what strangers may ask for (web chat messages, new visitors, a feature's wrong
guesses), kept in the database so that every worker, dyno and Lambda container shares them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from portabot.storage.database import Conn, Database, Query


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `most` hits on `key` in each fixed window of `seconds`."""

    key: str
    most: int
    seconds: float

    def window(self, now: float) -> float:
        return math.floor(now / self.seconds) * self.seconds


_UPSERT = (
    " ON CONFLICT (key) DO UPDATE SET"
    " count = CASE WHEN limits.window_start = excluded.window_start"
    " THEN limits.count + 1 ELSE 1 END,"
    " window_start = excluded.window_start"
    " RETURNING key, count"
)
"""A key's row starts again at 1 in a new window. Rows are locked in the order given, and
every caller lists its keys in one order: no deadlock."""


def _values(names: range) -> str:
    return ", ".join(f"(:key{i}, CAST(:window{i} AS FLOAT), 1)" for i in names)


@cache
def _hit(own: int, shared: int) -> Query:
    """Count the `own` limits; the `shared` ones only when no own one is over, so that one
    address's flood spends its own budget, not everyone's. SQLite runs the two parts as two
    statements (see `hit`): it has no INSERT inside WITH, and no round trips to save."""
    mine = f"INSERT INTO limits (key, window_start, count) VALUES {_values(range(own))}{_UPSERT}"
    if not shared:
        return Query(mine)
    names = range(own, own + shared)
    if not own:
        return Query(
            f"INSERT INTO limits (key, window_start, count) VALUES {_values(names)}{_UPSERT}"
        )
    over = " OR ".join(f"(key = :key{i} AND count > :most{i})" for i in range(own))
    rows = " UNION ALL ".join(f"SELECT :key{i}, CAST(:window{i} AS FLOAT), 1" for i in names)
    return Query(
        postgresql=f"""
        WITH mine AS ({mine}), everyone AS (
            INSERT INTO limits (key, window_start, count)
            SELECT * FROM ({rows}) AS hits WHERE NOT EXISTS (SELECT 1 FROM mine WHERE {over})
            {_UPSERT}
        )
        SELECT key, count FROM mine UNION ALL SELECT key, count FROM everyone
        """,
        sqlite="",  # never run: SQLite takes the two parts one after the other
    )


async def hit(
    conn: Conn, own: Sequence[Limit], now: float, shared: Sequence[Limit] = ()
) -> tuple[Limit, float] | None:
    """Count one hit on every limit of the requester's `own`, and, when none of them is over,
    on the `shared` ones (refused hits count too: a flood stays refused). Returns the limit that
    is over with the longest wait and the seconds until its window ends; None when none is."""
    limits = [*own, *shared]
    params: dict[str, object] = {}
    for i, limit in enumerate(limits):
        params[f"key{i}"] = limit.key
        params[f"window{i}"] = limit.window(now)
        params[f"most{i}"] = limit.most
    if conn.dialect == "sqlite" and own and shared:
        rows = await conn.fetch_all(_hit(len(own), 0), **params)
        mine = {row["key"]: row["count"] for row in rows}
        if not any(mine[limit.key] > limit.most for limit in own):
            rows += await conn.fetch_all(_hit(0, len(shared)), **_shift(params, len(own)))
    else:
        rows = await conn.fetch_all(_hit(len(own), len(shared)), **params)
    counts = {row["key"]: row["count"] for row in rows}
    over = [
        (limit, limit.window(now) + limit.seconds - now)
        for limit in limits
        if counts.get(limit.key, 0) > limit.most
    ]
    return max(over, key=lambda found: found[1]) if over else None


def _shift(params: dict[str, object], by: int) -> dict[str, object]:
    """Parameters numbered from `by` renumbered from 0."""
    shifted = {}
    for name, value in params.items():
        stem = name.rstrip("0123456789")
        number = int(name[len(stem) :])
        if number >= by:
            shifted[f"{stem}{number - by}"] = value
    return shifted


async def hit_now(
    db: Database, own: Sequence[Limit], now: float, shared: Sequence[Limit] = ()
) -> tuple[Limit, float] | None:
    """`hit` in a statement of its own that commits at once, so that a counter every request
    shares (the total) is locked for one statement, not for a whole update's transaction."""
    async with db.autocommit() as conn:
        return await hit(conn, own, now, shared)


_UNHIT = Query(
    "UPDATE limits SET count = count - 1 WHERE key = :key AND window_start = :window AND count > 0"
)


async def unhit(conn: Conn, limit: Limit, now: float) -> None:
    """Take back a hit that turned out not to count (a right guess)."""
    await conn.execute(_UNHIT, key=limit.key, window=limit.window(now))
