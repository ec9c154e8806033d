"""`Bot`: the services an update is handled with, whichever way it arrived (the ASGI app, `portabot
poll`, the test harness)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from portabot.channels import all_channels
from portabot.conversation.engine import Flow
from portabot.conversation.loader import load_flow
from portabot.logs import ThrottledLog
from portabot.outbound import Outbound
from portabot.settings import Settings
from portabot.storage.database import Database
from portabot.storage.schema import Schema
from portabot.storage.steps import Remembered

if TYPE_CHECKING:
    from portabot.runner import DueRunner


class Bot:
    """Settings, database, the flow (configured with the settings), channels, outbound calls."""

    def __init__(self, settings: Settings, flow: Flow | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        self.flow = flow if flow is not None else load_flow(settings)
        self.flow.configure(settings)
        self.schema = Schema(self.db, self.flow.features)  # checked on first use
        self.channels = all_channels(settings, self.db)
        self.outbound = Outbound(
            self.db, self.channels, settings.outbox_retry_seconds, paced=settings.send_pacing
        )
        self.rejections = ThrottledLog(logging.getLogger("portabot.webhooks"))
        self.clock: Callable[[], float] = time.time
        """The time the pipeline stamps an update with (and the flow sees as `ctx.now`);
        portabot.testing moves it forward."""
        self.remembered = Remembered()
        """The people this process stepped last: their ordinary updates take one statement."""
        self.runner: DueRunner | None = None
        """The loop that runs what is due while a server (its lifespan) or `portabot poll` runs:
        `poke()` it to have something run now. None elsewhere (commands, the harness, Lambda)
        and with TICK_SECONDS=0."""

    async def close(self) -> None:
        await self.outbound.close()
        await self.db.close()
