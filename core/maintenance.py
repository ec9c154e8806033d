"""`portabot maintain`: one idempotent run that keeps the tables to their retention window and
sends the replies whose time has come. Hosts run it on a schedule (Heroku Scheduler, an
EventBridge rule on Lambda, a systemd timer)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from portabot.features import Feature
from portabot.outbound import Outbound
from portabot.settings import Settings
from portabot.storage.database import Database
from portabot.storage.outbox import count_due
from portabot.storage.purge import (
    maintenance_lock,
    purge_failed_updates,
    purge_idle_visitors,
    purge_inbox,
    purge_inline_replies,
    purge_limits,
    purge_outbox,
    purge_pace,
    purge_updates,
    purge_web_updates,
)

DAY = 86_400.0
HOUR = 3_600.0
GAVE_UP_KEPT = 30 * DAY
"""Replies a platform refused for good are kept at least a month: they are rare, and the only
trace of a reply that never arrived."""
PACE_IDLE = 600.0
"""Seconds after its last send time that a send schedule is dropped: by then it holds nothing
back (a margin above every pause a platform asks for, and any clock skew between senders)."""
LOCKED = "another maintain run holds the lock; nothing done"


@contextlib.asynccontextmanager
async def outbound_for(settings: Settings) -> AsyncIterator[Outbound]:
    """The database (one connection) and the platforms' APIs, for a command's one run."""
    from portabot.channels import platform_channels

    db = Database(settings.database_url, pool_size=1)
    channels = {c.platform: c for c in platform_channels(settings, db)}
    outbound = Outbound(db, channels, paced=settings.send_pacing)
    try:
        yield outbound
    finally:
        await outbound.close()
        await db.close()


async def deliver_outbox(outbound: Outbound) -> str:
    """Send every reply that is due; says what happened in one line."""
    sent, failed = await outbound.deliver_all_due()
    waiting = await count_due(outbound.db, time.time() + 100 * 365 * DAY)
    return f"sent {sent}, failed {failed}; {waiting} waiting for a later try"


async def maintain(
    outbound: Outbound,
    keep_updates_days: float,
    keep_visitors_days: float = 30.0,
    features: Sequence[Feature] = (),
) -> list[str]:
    """Purge (our tables, then each feature's purge step), then deliver; one line per thing
    done. Running it again at once finds nothing."""
    db = outbound.db
    async with maintenance_lock(db) as held:
        if not held:
            return [LOCKED]
        now = time.time()
        keep = keep_updates_days * DAY
        updates = await purge_updates(db, now - keep)
        replies = await purge_outbox(db, now - keep, now - max(keep, GAVE_UP_KEPT))
        failed = await purge_failed_updates(db, now - max(keep, GAVE_UP_KEPT))
        inline = await purge_inline_replies(db, now - DAY)
        web = await purge_web_updates(db, now - DAY)
        owned = ["jobs", *(t.name for f in features for t in f.tables if "person_id" in t.columns)]
        visitors = await purge_idle_visitors(db, now - keep_visitors_days * DAY, owned)
        inbox = await purge_inbox(db, now - keep_visitors_days * DAY)  # after the visitors
        limits = await purge_limits(db, now - HOUR)  # the longest window is an hour
        paces = await purge_pace(db, now - PACE_IDLE)
        purged = [line for f in features if (line := await f.purge(db, now)) is not None]
        delivered = await deliver_outbox(outbound)
    days = f"{keep_updates_days:g} day{'s' if keep_updates_days != 1 else ''}"
    visitor_days = f"{keep_visitors_days:g} day{'s' if keep_visitors_days != 1 else ''}"
    gave_up_days = f"{max(keep, GAVE_UP_KEPT) / DAY:g} days"
    return [
        f"updates: {updates} deleted (received more than {days} ago)",
        f"outbox: {replies} deleted (sent more than {days} ago, "
        f"or given up more than {gave_up_days} ago)",
        f"failed updates: {failed} deleted (last failed more than {gave_up_days} ago)",
        f"inline replies: {inline} deleted (kept a day, while a platform may re-deliver)",
        f"web chat update ids: {web} deleted (received more than a day ago)",
        f"web visitors: {visitors} deleted (web only, idle more than {visitor_days})",
        f"web inbox: {inbox} deleted (not collected within {visitor_days}, "
        "or its visitor forgotten)",
        f"limit counters: {limits} deleted (their window has ended)",
        f"send schedules: {paces} deleted (idle more than {PACE_IDLE / 60:g} minutes)",
        *purged,
        f"outbox: {delivered}",
    ]
