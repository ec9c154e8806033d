"""Secrets the deployment makes once and keeps in the database, shared by every worker."""

from __future__ import annotations

import secrets

from portabot.storage.database import Database, Query

_KEEP = Query("INSERT INTO secrets (name, value) VALUES (:name, :value) ON CONFLICT DO NOTHING")
_READ = Query("SELECT value FROM secrets WHERE name = :name")


async def kept_secret(db: Database, name: str) -> str:
    """The secret of that name: made at random by the first worker that asks, the same for all."""
    async with db.transaction() as conn:
        await conn.execute(_KEEP, name=name, value=secrets.token_urlsafe(32))
        value: str = await conn.fetch_val(_READ, name=name)
    return value
