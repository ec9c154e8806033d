"""Replies waiting to be sent through a platform's API, stored with the state change, sent
after the commit, and retried later (with backoff) until sent or refused for good."""

from __future__ import annotations

import json
from dataclasses import replace

from portabot.messages import Delivery
from portabot.replies import dumps
from portabot.storage.database import Conn, Database, Query

LEASE = 60.0
"""Seconds a sender holds a reply before another may try it (a crash in between retries it)."""
MAX_ATTEMPTS = 12
"""Attempts before a reply is given up (about a day of backoff)."""

_ADD = Query(
    "INSERT INTO outbox (platform, chat_id, thread_id, text, reply, key, created_at, due_at)"
    " VALUES (:platform, :chat_id, :thread_id, :text, :reply, :key, :now, :due_at) RETURNING id"
)
_SENT = Query(
    "UPDATE outbox SET sent_at = :now, attempts = attempts + 1, last_error = NULL, due_at = NULL"
    " WHERE id = :id"
)
_FAILED = Query(
    "UPDATE outbox SET attempts = attempts + 1, last_error = :error WHERE id = :id"
    " RETURNING attempts"
)
_POSTPONE = Query("UPDATE outbox SET due_at = :due_at WHERE id = :id AND sent_at IS NULL")
_RETRY = Query("UPDATE outbox SET due_at = :due_at, gave_up_at = :gave_up_at WHERE id = :id")
_DUE = "sent_at IS NULL AND gave_up_at IS NULL AND (due_at IS NULL OR due_at <= :now)"
# Other senders skip what one has taken: FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite has one
# writer at a time.
_CLAIM = Query(
    f"""
    UPDATE outbox SET due_at = :lease_until
    WHERE id IN (SELECT id FROM outbox WHERE {_DUE} ORDER BY id LIMIT :limit {{skip_locked}})
    RETURNING id, platform, chat_id, thread_id, text, reply, key
    """
)
_COUNT_DUE = Query(f"SELECT count(*) FROM outbox WHERE {_DUE}")
_MOVE_CHAT = Query(
    "UPDATE outbox SET chat_id = :new_chat_id WHERE platform = :platform AND chat_id = :old_chat_id"
    " AND sent_at IS NULL AND gave_up_at IS NULL"
)


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the n-th failed attempt: 10 s doubling, at most an hour."""
    return float(min(3600, 10 * 2 ** (attempts - 1)))


async def add_to_outbox(
    conn: Conn, deliveries: list[Delivery], now: float, *, leased: bool = True
) -> list[Delivery]:
    """Store the deliveries, leased to the caller (which sends them next) or, not `leased`, due
    for any sender; returns them with their outbox ids."""
    stored = []
    for d in deliveries:
        extra = d.extra()
        outbox_id = await conn.fetch_val(
            _ADD,
            platform=d.platform,
            chat_id=d.chat_id,
            thread_id=d.thread_id,
            text=d.text,
            reply=None if extra is None else dumps(extra),
            key=d.key,
            now=now,
            due_at=now + LEASE if leased else None,
        )
        stored.append(replace(d, outbox_id=outbox_id))
    return stored


async def mark_sent(db: Database, outbox_id: int, now: float) -> None:
    async with db.autocommit() as conn:
        await conn.execute(_SENT, now=now, id=outbox_id)


async def mark_failed(
    db: Database, outbox_id: int, error: str, now: float, *, retryable: bool
) -> bool:
    """Note the failure and when to try again; returns False when the reply is given up."""
    async with db.transaction() as conn:
        attempts = await conn.fetch_val(_FAILED, error=error[:200], id=outbox_id)
        gave_up = not retryable or attempts >= MAX_ATTEMPTS
        await conn.execute(
            _RETRY,
            due_at=None if gave_up else now + retry_delay(attempts),
            gave_up_at=now if gave_up else None,
            id=outbox_id,
        )
    return not gave_up


async def postpone(db: Database, outbox_id: int, due_at: float) -> None:
    """Give a reply back, due at `due_at` (not a failure: the platform's limits put it off)."""
    async with db.autocommit() as conn:
        await conn.execute(_POSTPONE, due_at=due_at, id=outbox_id)


async def claim_due(db: Database, now: float, limit: int) -> list[Delivery]:
    """Take up to `limit` due replies, oldest first, leasing them to this sender."""
    async with db.transaction() as conn:
        rows = await conn.fetch_all(_CLAIM, now=now, lease_until=now + LEASE, limit=limit)
    found = sorted(rows, key=lambda r: r["id"])
    return [
        Delivery(
            r["platform"], r["chat_id"], r["text"], r["key"], r["id"], r["thread_id"]
        ).with_extra(json.loads(r["reply"]) if r["reply"] else None)
        for r in found
    ]


async def count_due(db: Database, now: float) -> int:
    async with db.autocommit() as conn:
        count: int = await conn.fetch_val(_COUNT_DUE, now=now)
    return count


async def readdress_replies(conn: Conn, platform: str, old_chat_id: str, new_chat_id: str) -> None:
    """Replies still to be sent to a chat that now has a new id go to the new one."""
    await conn.execute(
        _MOVE_CHAT, platform=platform, old_chat_id=old_chat_id, new_chat_id=new_chat_id
    )
