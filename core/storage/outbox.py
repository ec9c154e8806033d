"""Replies waiting to be sent through a platform's API, stored with the state change."""

from __future__ import annotations

from databases.core import Connection

from core.messages import Delivery
from core.storage.database import Database
from core.storage.tables import outbox


async def add_to_outbox(conn: Connection, deliveries: list[Delivery], now: float) -> list[Delivery]:
    """Store the deliveries; returns them with their outbox ids."""
    if not deliveries:
        return []
    rows = await conn.fetch_all(
        outbox.insert()
        .values(
            [
                {
                    "platform": d.platform,
                    "chat_id": d.chat_id,
                    "text": d.text,
                    "key": d.key,
                    "created_at": now,
                }
                for d in deliveries
            ]
        )
        .returning(outbox.c.id)
    )
    ids = sorted(row._mapping["id"] for row in rows)
    return [
        Delivery(d.platform, d.chat_id, d.text, d.key, outbox_id)
        for d, outbox_id in zip(deliveries, ids, strict=True)
    ]


async def mark_sent(db: Database, outbox_id: int, now: float) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(sent_at=now, attempts=outbox.c.attempts + 1, last_error=None)
        )


async def mark_failed(db: Database, outbox_id: int, error: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(attempts=outbox.c.attempts + 1, last_error=error[:200])
        )
