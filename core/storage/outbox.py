"""Replies waiting to be sent through a platform's API, stored with the state change, sent
after the commit, and retried later (with backoff) until sent or refused for good."""

from __future__ import annotations

import sqlalchemy as sa
from databases.core import Connection

from core.messages import Delivery
from core.storage.database import Database
from core.storage.tables import outbox

LEASE = 60.0
"""Seconds a sender holds a reply before another may try it (a crash in between retries it)."""
MAX_ATTEMPTS = 12
"""Attempts before a reply is given up (about a day of backoff)."""


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the n-th failed attempt: 10 s doubling, at most an hour."""
    return float(min(3600, 10 * 2 ** (attempts - 1)))


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
                    "due_at": now + LEASE,  # the request that stored them sends them next
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
            .values(sent_at=now, attempts=outbox.c.attempts + 1, last_error=None, due_at=None)
        )


async def mark_failed(
    db: Database, outbox_id: int, error: str, now: float, *, retryable: bool
) -> bool:
    """Note the failure and when to try again; returns False when the reply is given up."""
    async with db.transaction() as conn:
        attempts = await conn.fetch_val(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(attempts=outbox.c.attempts + 1, last_error=error[:200])
            .returning(outbox.c.attempts)
        )
        gave_up = not retryable or attempts >= MAX_ATTEMPTS
        await conn.execute(
            outbox.update()
            .where(outbox.c.id == outbox_id)
            .values(
                due_at=None if gave_up else now + retry_delay(attempts),
                gave_up_at=now if gave_up else None,
            )
        )
    return not gave_up


def _due(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        outbox.c.sent_at.is_(None),
        outbox.c.gave_up_at.is_(None),
        sa.or_(outbox.c.due_at.is_(None), outbox.c.due_at <= now),
    )


async def claim_due(db: Database, now: float, limit: int) -> list[Delivery]:
    """Take up to `limit` due replies, oldest first, leasing them to this sender (other senders
    skip them: FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite has one writer at a time)."""
    due = (
        sa.select(outbox.c.id)
        .where(_due(now))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    async with db.transaction() as conn:
        rows = await conn.fetch_all(
            outbox.update()
            .where(outbox.c.id.in_(due))
            .values(due_at=now + LEASE)
            .returning(
                outbox.c.id, outbox.c.platform, outbox.c.chat_id, outbox.c.text, outbox.c.key
            )
        )
    found = sorted((r._mapping for r in rows), key=lambda r: r["id"])
    return [Delivery(r["platform"], r["chat_id"], r["text"], r["key"], r["id"]) for r in found]


async def count_due(db: Database, now: float) -> int:
    database = await db.connected()
    count: int = await database.fetch_val(sa.select(sa.func.count()).where(_due(now)))
    return count
