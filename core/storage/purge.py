"""Deleting what the bot no longer needs, in bounded batches, and the lock that keeps two
maintenance runs from doing it at once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from portabot.storage.database import Database, Query

BATCH = 10_000
"""Rows one statement deletes: a backlog of millions is many short transactions, not one that
holds its locks (and, on SQLite, the only writer's place) for minutes."""
LOCK_KEY = 0x706F_7274_6D61_696E
"""pg_advisory_lock's key for `portabot maintain` ("portmain"): the same in every process."""


def batch_delete(table: str, key: str, condition: str) -> Query:
    """A statement deleting up to BATCH rows that meet the condition (for delete_in_batches)."""
    return Query(
        f"DELETE FROM {table} WHERE ({key}) IN"
        f" (SELECT {key} FROM {table} WHERE {condition} LIMIT {BATCH}) RETURNING 1"
    )


_UPDATES = batch_delete("updates", "platform, update_id", "received_at < :before")
_ARRIVALS = batch_delete("arrivals", "platform, update_id", "arrived_at < :before")
_OUTBOX = batch_delete("outbox", "id", "sent_at < :before OR gave_up_at < :gave_up_before")
_INLINE_REPLIES = batch_delete("inline_replies", "platform, update_id", "replied_at < :before")
_FAILED_UPDATES = batch_delete("failed_updates", "platform, update_id", "last_at < :before")
_WEB_UPDATES = batch_delete(
    "updates", "platform, update_id", "platform = 'web' AND received_at < :before"
)
_INBOX = batch_delete(
    "inbox",
    "id",
    "created_at < :before OR NOT EXISTS (SELECT 1 FROM accounts"
    " WHERE accounts.platform = 'web' AND accounts.user_id = inbox.user_id)",
)
_LIMITS = batch_delete("limits", "key", "window_start < :before")
_PACE = batch_delete("pace", "scope", "next_at < :before")
_WEB_ONLY_IDLE = """SELECT id FROM people WHERE updated_at < :before
    AND EXISTS (SELECT 1 FROM accounts WHERE person_id = people.id AND platform = 'web')
    AND NOT EXISTS (SELECT 1 FROM accounts WHERE person_id = people.id AND platform <> 'web')"""
_NO_ACCOUNT = """SELECT id FROM people WHERE updated_at < :before
    AND NOT EXISTS (SELECT 1 FROM accounts WHERE person_id = people.id)"""
# Three statements, as SQLite's foreign keys don't cascade (its connections don't enable them):
# the accounts of a batch of idle web-only people, then the codes and people left without one.
_IDLE_ACCOUNTS = Query(
    f"DELETE FROM accounts WHERE platform = 'web'"
    f" AND person_id IN ({_WEB_ONLY_IDLE} LIMIT {BATCH}) RETURNING 1"
)
_ORPHANS = Query(f"DELETE FROM people WHERE id IN ({_NO_ACCOUNT}) RETURNING 1")
_TRY_LOCK = Query("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = Query("SELECT pg_advisory_unlock(:key)")


async def delete_in_batches(db: Database, query: Query, **params: float) -> int:
    """Run a batch delete until it deletes less than a batch, each batch its own transaction;
    returns how many rows were deleted."""
    deleted = 0
    while True:
        async with db.transaction() as conn:
            rows = await conn.fetch_all(query, **params)
        deleted += len(rows)
        if len(rows) < BATCH:
            return deleted


async def purge_updates(db: Database, received_before: float) -> int:
    """Forget the update ids received before the time (platforms re-deliver for a day at most),
    and the arrivals noted for ordering before it."""
    await delete_in_batches(db, _ARRIVALS, before=received_before)
    return await delete_in_batches(db, _UPDATES, before=received_before)


async def purge_outbox(db: Database, sent_before: float, gave_up_before: float) -> int:
    """Replies sent before `sent_before`, and those given up before `gave_up_before`."""
    return await delete_in_batches(db, _OUTBOX, before=sent_before, gave_up_before=gave_up_before)


async def purge_inline_replies(db: Database, replied_before: float) -> int:
    """Replies kept for a late re-delivery, once the platform has stopped re-delivering."""
    return await delete_in_batches(db, _INLINE_REPLIES, before=replied_before)


async def purge_failed_updates(db: Database, failed_before: float) -> int:
    """The record of updates the flow failed on, last failed before the time."""
    return await delete_in_batches(db, _FAILED_UPDATES, before=failed_before)


async def purge_web_updates(db: Database, received_before: float) -> int:
    """The web chat's update ids received before the time: they only catch the page's own
    retries, which come within seconds, and strangers can send many."""
    return await delete_in_batches(db, _WEB_UPDATES, before=received_before)


async def purge_inbox(db: Database, kept_before: float) -> int:
    """The web chat's inbox messages no page collected since before the time (their visitor
    never came back), and those of visitors forgotten (no web account has their id)."""
    return await delete_in_batches(db, _INBOX, before=kept_before)


async def purge_limits(db: Database, before: float) -> int:
    """Limit counters whose window started before the time."""
    return await delete_in_batches(db, _LIMITS, before=before)


async def purge_pace(db: Database, before: float) -> int:
    """Send schedules idle since before the time: a schedule whose next send is past is as good
    as none, and one row per chat ever sent to would otherwise stay for good."""
    return await delete_in_batches(db, _PACE, before=before)


async def purge_idle_visitors(db: Database, idle_before: float, owned: Sequence[str] = ()) -> int:
    """Web-only people (no account on another platform) whose state was last written before the
    time, with their accounts and their rows in the `owned` tables (features' tables with a
    `person_id` column): a web visitor gone that long is forgotten. Returns how many."""
    forget = [Query(f"DELETE FROM {table} WHERE person_id IN ({_NO_ACCOUNT})") for table in owned]
    deleted = 0
    while True:
        async with db.transaction() as conn:
            accounts = await conn.fetch_all(_IDLE_ACCOUNTS, before=idle_before)
            for rows in forget:
                await conn.execute(rows, before=idle_before)
            deleted += len(await conn.fetch_all(_ORPHANS, before=idle_before))
        if len(accounts) < BATCH:
            return deleted


@contextlib.asynccontextmanager
async def maintenance_lock(db: Database) -> AsyncIterator[bool]:
    """Yields whether this run may go ahead. On PostgreSQL a session-level advisory lock on a
    connection of its own, released at the end or with the connection. SQLite has no such lock
    and needs none: each batch is one write transaction, SQLite lets one writer in at a time, and
    a second run only finds less to do."""
    if db.dialect != "postgresql":
        yield True
        return
    async with db.session() as conn:
        held = bool(await conn.fetch_val(_TRY_LOCK, key=LOCK_KEY))
        try:
            yield held
        finally:
            if held:
                await conn.fetch_val(_UNLOCK, key=LOCK_KEY)
