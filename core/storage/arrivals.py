"""Updates that wait their turn: noted when they arrive (committed at once, so every worker sees
them), done once their `updates` row is committed."""

from __future__ import annotations

from portabot.storage.database import Database, Query

_NOTE = Query(
    "INSERT INTO arrivals (platform, update_id, user_id, sequence, arrived_at)"
    " VALUES (:platform, :update_id, :user_id, :sequence, :now)"
    " ON CONFLICT (platform, update_id) DO UPDATE SET arrived_at = excluded.arrived_at"
)
_EARLIER = Query(
    """
    SELECT 1 FROM arrivals
    WHERE platform = :platform AND user_id = :user_id AND sequence < :sequence
        AND arrived_at > :since
        AND NOT EXISTS (
            SELECT 1 FROM updates
            WHERE updates.platform = arrivals.platform AND updates.update_id = arrivals.update_id
        )
    LIMIT 1
    """
)


async def note_arrival(
    db: Database, platform: str, update_id: str, user_id: str, sequence: int, now: float
) -> None:
    async with db.autocommit() as conn:
        await conn.execute(
            _NOTE,
            platform=platform,
            update_id=update_id,
            user_id=user_id,
            sequence=sequence,
            now=now,
        )


async def earlier_waiting(
    db: Database, platform: str, user_id: str, sequence: int, since: float
) -> bool:
    """Whether an update from the same sender with a lower sequence, which arrived after `since`,
    is not processed yet."""
    async with db.autocommit() as conn:
        row = await conn.fetch_one(
            _EARLIER, platform=platform, user_id=user_id, sequence=sequence, since=since
        )
    return row is not None
