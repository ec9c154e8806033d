"""Images a platform was given once (VK's uploaded photos), remembered by the SHA-256 of their
URL so that every later reply with the same URL sends the platform's reference instead of
uploading again, in every worker and after restarts."""

from __future__ import annotations

import hashlib
import time

from portabot.storage.database import Database, Query

_READ = Query("SELECT ref FROM media WHERE platform = :platform AND url_key = :url_key")
_KEEP = Query(
    "INSERT INTO media (platform, url_key, ref, created_at)"
    " VALUES (:platform, :url_key, :ref, :now) ON CONFLICT DO NOTHING"
)


def url_key(url: str) -> str:
    """The key of a URL in the `media` table: a URL may be long and carry a token in its query,
    the table keeps neither."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


async def remembered_media(db: Database, platform: str, url: str) -> str | None:
    """The platform's reference for the image at `url`, if it was given it before."""
    async with db.autocommit() as conn:
        ref: str | None = await conn.fetch_val(_READ, platform=platform, url_key=url_key(url))
    return ref


async def remember_media(
    db: Database, platform: str, url: str, ref: str, *, now: float | None = None
) -> str:
    """Keep `ref` for the image at `url`; returns the reference kept, which is the first one
    remembered when another worker uploaded the same URL at the same time (both work; every
    later reply uses that one)."""
    at = time.time() if now is None else now
    async with db.transaction() as conn:
        key = url_key(url)
        await conn.execute(_KEEP, platform=platform, url_key=key, ref=ref, now=at)
        kept: str = await conn.fetch_val(_READ, platform=platform, url_key=key)
    return kept
