"""The web chat's inbox: messages for a visitor that wait until their page collects them (the
web chat can only answer its own requests, so a message to a web visitor is kept here)."""

from __future__ import annotations

import json

from portabot.messages import Delivery
from portabot.replies import dumps
from portabot.storage.database import Conn, Database, Query

MAX_COLLECTED = 50
"""Messages one collection returns at most (the rest come with the next)."""

_ADD = Query(
    "INSERT INTO inbox (user_id, text, reply, key, created_at)"
    " VALUES (:user_id, :text, :reply, :key, :now) ON CONFLICT DO NOTHING"
)
_TAKE = Query(
    "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE user_id = :user_id"
    " ORDER BY id LIMIT :limit) RETURNING id, user_id, text, reply, key"
)


async def add_to_inbox(conn: Conn, deliveries: list[Delivery], now: float) -> None:
    """Keep web deliveries (chat_id: the visitor) for their page; one already kept under its key
    is not kept again."""
    for d in deliveries:
        extra = d.extra()
        await conn.execute(
            _ADD,
            user_id=d.chat_id,
            text=d.text,
            reply=None if extra is None else dumps(extra),
            key=d.key,
            now=now,
        )


async def collect_inbox(db: Database, user_id: str, limit: int = MAX_COLLECTED) -> list[Delivery]:
    """The visitor's waiting messages, oldest first, taken: each is shown once."""
    async with db.transaction() as conn:
        rows = await conn.fetch_all(_TAKE, user_id=user_id, limit=limit)
    return [
        Delivery("web", r["user_id"], r["text"], r["key"]).with_extra(
            json.loads(r["reply"]) if r["reply"] else None
        )
        for r in sorted(rows, key=lambda r: r["id"])
    ]
