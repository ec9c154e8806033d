"""The record of platform update ids that makes a re-delivery harmless."""

from __future__ import annotations

from databases.core import Connection

from core.storage.database import Database
from core.storage.tables import updates


async def record_update(
    conn: Connection, db: Database, platform: str, update_id: str, now: float
) -> bool:
    """True the first time this update is seen; False for a re-delivery (or a concurrent twin,
    which waits here until the first one's transaction ends)."""
    inserted = await conn.fetch_val(
        db.insert(updates)
        .values(platform=platform, update_id=update_id, received_at=now)
        .on_conflict_do_nothing()
        .returning(updates.c.update_id)
    )
    return inserted is not None
