"""Send times reserved in schedules that every worker, dyno, Lambda container and command shares
(the `pace` table), so that a platform's rate limits hold however many of them send at once.

Each schedule (a scope: a bot, a chat, a community) is one row holding `next_at`, the theoretical
time of its next send (GCRA, the generic cell rate algorithm): a send is allowed from `next_at -
slack` on, where `slack` lets a short burst through, and takes `step` seconds of the schedule. A
send governed by several scopes goes at the latest time any of them allows, and every one of them
then advances from that time. On PostgreSQL that is one statement (one round trip, outside a
transaction); SQLite takes its one writer's turn for two."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from portabot.storage.database import Database, Query

RESERVE_TRIES = 5
"""Reservations tried when a concurrent first send to a scope made one invalid (see reserve)."""
EPSILON = 1e-6
"""Seconds of float rounding that a time compared with another may be off by."""


@dataclass(frozen=True, slots=True)
class Pace:
    """At most one send every `interval` seconds on `scope`, with bursts of up to `burst` at once
    after a quiet spell."""

    scope: str
    interval: float
    burst: int = 1

    @property
    def slack(self) -> float:
        """How far ahead of its schedule a send may go (GCRA's burst tolerance)."""
        return (self.burst - 1) * self.interval


@dataclass(frozen=True, slots=True)
class Slot:
    """A reservation's answer: the time to send at, and whether it was taken (False: it is past
    the caller's limit, nothing was reserved, and `at` is the earliest time worth trying)."""

    at: float
    taken: bool


def _numbered(count: int) -> str:
    return ", ".join(f":scope{i}" for i in range(count))


@cache
def _reserve(count: int) -> Query:
    """The reservation over `count` scopes. PostgreSQL: the scopes' rows are locked in one order
    (no deadlock), the slot is the latest time they all allow, and the rows are written (new
    ones inserted) only when the slot is within the limit. SQLite: the read (its writer's turn
    is the lock); `_take` writes."""
    wanted = ", ".join(
        f"(CAST(:scope{i} AS VARCHAR), CAST(:step{i} AS FLOAT), CAST(:slack{i} AS FLOAT))"
        for i in range(count)
    )
    return Query(
        postgresql=f"""
        WITH wanted (scope, step, slack) AS (VALUES {wanted}),
        held AS (
            SELECT scope, next_at FROM pace WHERE scope IN ({_numbered(count)})
            ORDER BY scope FOR UPDATE
        ),
        slot AS (
            SELECT greatest(CAST(:now AS FLOAT), max(held.next_at - wanted.slack)) AS at
            FROM wanted LEFT JOIN held USING (scope)
        ),
        taken AS (
            INSERT INTO pace (scope, next_at, step)
            SELECT wanted.scope, slot.at + wanted.step, wanted.step FROM wanted, slot
            WHERE slot.at <= CAST(:latest AS FLOAT)
            ORDER BY wanted.scope
            ON CONFLICT (scope) DO UPDATE
            SET next_at = greatest(pace.next_at + excluded.step, excluded.next_at),
                step = excluded.step
            RETURNING scope, next_at
        )
        SELECT slot.at, taken.scope, taken.next_at FROM slot LEFT JOIN taken ON true
        """,
        sqlite=f"SELECT scope, next_at FROM pace WHERE scope IN ({_numbered(count)})",
    )


_TAKE = Query(
    "INSERT INTO pace (scope, next_at, step) VALUES (:scope, :next_at, :step)"
    " ON CONFLICT (scope) DO UPDATE"
    " SET next_at = max(pace.next_at + excluded.step, excluded.next_at), step = excluded.step"
)
_HOLD = Query(
    postgresql="INSERT INTO pace (scope, next_at, step) VALUES (:scope, :next_at, :step)"
    " ON CONFLICT (scope) DO UPDATE SET next_at = greatest(pace.next_at, excluded.next_at)",
    sqlite="INSERT INTO pace (scope, next_at, step) VALUES (:scope, :next_at, :step)"
    " ON CONFLICT (scope) DO UPDATE SET next_at = max(pace.next_at, excluded.next_at)",
)


def _params(paces: Sequence[Pace]) -> dict[str, object]:
    params: dict[str, object] = {}
    for i, pace in enumerate(paces):
        params[f"scope{i}"] = pace.scope
        params[f"step{i}"] = float(pace.interval)
        params[f"slack{i}"] = float(pace.slack)
    return params


async def reserve(db: Database, paces: Sequence[Pace], now: float, latest: float) -> Slot:
    """Reserve the earliest send time that every pace allows, unless it is after `latest`.

    Rows are locked before they are read, so two reservations never share a slot, except where a
    scope had no row yet: two first sends may both read "free" and insert it at once. Then the
    second one's write lands on the first one's row, which its returned `next_at` shows (further
    than its own slot allows); that slot is given up (a gap in the schedules, nothing worse) and
    another reserved."""
    ordered = sorted({pace.scope: pace for pace in paces}.values(), key=lambda p: p.scope)
    if not ordered:
        return Slot(now, True)
    params = _params(ordered)
    if db.dialect == "sqlite":
        return await _reserve_sqlite(db, ordered, params, now, latest)
    by_scope = {pace.scope: pace for pace in ordered}
    for _ in range(RESERVE_TRIES):
        async with db.autocommit() as conn:
            rows = await conn.fetch_all(
                _reserve(len(ordered)), now=float(now), latest=float(latest), **params
            )
        at = float(rows[0]["at"])
        if rows[0]["scope"] is None:
            return Slot(at, False)
        if all(_within(by_scope[row["scope"]], row["next_at"], at) for row in rows):
            return Slot(at, True)
        now = max(now, at)
    raise RuntimeError("could not reserve a send time: the schedules kept changing")


def _within(pace: Pace, next_at: float, at: float) -> bool:
    """Whether a schedule written by a reservation at `at` shows it was within the pace (a
    concurrent first send's write landing on ours shows as `next_at` further on)."""
    return next_at <= at + pace.interval + pace.slack + EPSILON


async def _reserve_sqlite(
    db: Database, paces: list[Pace], params: dict[str, object], now: float, latest: float
) -> Slot:
    async with db.transaction() as conn:
        rows = await conn.fetch_all(_reserve(len(paces)), **params)
        found = {row["scope"]: row["next_at"] for row in rows}
        at = max([now, *(found[p.scope] - p.slack for p in paces if p.scope in found)])
        if at > latest:
            return Slot(at, False)
        for pace in paces:
            await conn.execute(
                _TAKE, scope=pace.scope, next_at=at + pace.interval, step=pace.interval
            )
    return Slot(at, True)


async def hold(db: Database, paces: Sequence[Pace], until: float) -> None:
    """No send on these paces before `until` (the platform said to wait), for every sender."""
    async with db.transaction() as conn:
        for pace in sorted(paces, key=lambda p: p.scope):
            await conn.execute(
                _HOLD, scope=pace.scope, next_at=until + pace.slack, step=pace.interval
            )
