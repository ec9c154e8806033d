"""The record of platform update ids that makes a re-delivery harmless."""

from __future__ import annotations

from portabot.storage.database import Conn, Query

_RECORD = (
    "INSERT INTO updates (platform, update_id, received_at)"
    " VALUES (:platform, :update_id, :now) ON CONFLICT DO NOTHING RETURNING 1"
)
RECORD_UPDATE = Query(_RECORD)
SEEN = f"seen AS ({_RECORD})"
"""The update id recorded as a CTE: `seen` has a row when it is new (PostgreSQL)."""


async def record_update(conn: Conn, platform: str, update_id: str, now: float) -> bool:
    """True the first time this update is seen; False for a re-delivery (or a concurrent twin,
    which waits here until the first one's transaction ends)."""
    row = await conn.fetch_one(RECORD_UPDATE, platform=platform, update_id=update_id, now=now)
    return row is not None
