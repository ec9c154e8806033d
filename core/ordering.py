"""One sender's updates applied in the platform's order (Telegram numbers its updates).

Telegram sends updates over up to 40 connections at once, so two messages someone sent a moment
apart can reach two workers in either order. With ORDER_WINDOW_MS set, an update is noted when it
arrives (committed, so every worker sees it), waits that window, then waits until every earlier
update from the same sender that has arrived meanwhile is processed. Off by default: it adds the
window to every reply and a few queries to every update.
"""

from __future__ import annotations

import asyncio
import logging
import time

from portabot.messages import Update
from portabot.outbound import REPLY_BUDGET
from portabot.storage.arrivals import earlier_waiting, note_arrival
from portabot.storage.database import Database

log = logging.getLogger("portabot.ordering")

POLL = 0.01
"""Seconds between looks at whether an earlier update is done."""
MAX_WAIT = 2.0
"""Seconds after the window an update waits for an earlier one still being processed; an earlier
one that takes longer (or whose worker died) no longer holds the later ones back."""


async def wait_turn(db: Database, update: Update, window: float) -> None:
    message = update.message
    if window <= 0 or update.sequence is None or message is None:
        return
    arrived = time.time()
    sender = message.account.user_id
    await note_arrival(db, update.platform, update.update_id, sender, update.sequence, arrived)
    await asyncio.sleep(window)
    since = arrived - window - MAX_WAIT - REPLY_BUDGET
    give_up = time.monotonic() + MAX_WAIT
    while await earlier_waiting(db, update.platform, sender, update.sequence, since):
        if time.monotonic() >= give_up:
            log.warning(
                "%s update %s goes ahead of an earlier one still not processed",
                update.platform,
                update.update_id,
            )
            return
        await asyncio.sleep(POLL)
