"""Updates the flow failed on: counted across deliveries, and given up after a few."""

from __future__ import annotations

from portabot.messages import Update
from portabot.storage.database import Conn, Query
from portabot.storage.updates import record_update

_NOTE = Query(
    """
    INSERT INTO failed_updates (platform, update_id, attempts, error, first_at, last_at)
    VALUES (:platform, :update_id, 1, :error, :now, :now)
    ON CONFLICT (platform, update_id) DO UPDATE SET
        attempts = failed_updates.attempts + 1, error = excluded.error, last_at = excluded.last_at
    RETURNING attempts
    """
)


async def note_failure(
    conn: Conn, update: Update, error: str, now: float, *, give_up_at: int
) -> bool:
    """Count one more failure; at the `give_up_at`-th the update is recorded as seen, so that its
    re-deliveries are acknowledged as duplicates. Returns whether it was given up."""
    platform, update_id = update.platform, update.update_id
    attempts: int = await conn.fetch_val(
        _NOTE, platform=platform, update_id=update_id, error=error[:200], now=now
    )
    if attempts < give_up_at:
        return False
    await record_update(conn, platform, update_id, now)
    return True
