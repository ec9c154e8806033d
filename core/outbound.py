"""Calls to the platforms' APIs for replies that did not fit in the webhook response."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from core.channels.base import ApiError, Channel
from core.messages import Delivery
from core.storage.database import Database
from core.storage.outbox import mark_failed, mark_sent

if TYPE_CHECKING:
    from aiohttp import ClientSession

log = logging.getLogger("portabot.outbound")
T = TypeVar("T")

ATTEMPTS = 3
MAX_WAIT = 5.0
"""Longest pause between attempts: the webhook that waits for us has a time budget."""


@contextlib.asynccontextmanager
async def client_session() -> AsyncIterator[ClientSession]:
    """A short-lived HTTP client for one-off calls (the CLI, VK's confirmation code)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        yield session


def call_now(call: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Run one API call outside the server (the command line); raises what the call raises."""

    async def run() -> T:
        async with client_session() as session:
            return await call(session)

    return asyncio.run(run())


class Outbound:
    def __init__(self, db: Database, channels: Mapping[str, Channel]) -> None:
        self.db = db
        self.channels = channels
        self._session: ClientSession | None = None

    async def session(self) -> ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp  # imported on the first outbound call, not at cold start

            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, deliveries: list[Delivery]) -> None:
        """Send in order; what cannot be sent stays in the outbox with the error noted."""
        for delivery in deliveries:
            assert delivery.outbox_id is not None
            try:
                await self.send(delivery)
            except ApiError as exc:
                log.warning("reply %d stays in the outbox: %s", delivery.outbox_id, exc)
                await self._note(mark_failed(self.db, delivery.outbox_id, str(exc)))
            else:
                await self._note(mark_sent(self.db, delivery.outbox_id, time.time()))

    async def send(self, delivery: Delivery) -> None:
        channel = self.channels[delivery.platform]
        session = await self.session()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await channel.send(session, delivery)
                return
            except ApiError as exc:
                if attempt == ATTEMPTS or not exc.retryable:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else 0.25 * 2**attempt
                if wait > MAX_WAIT:
                    raise
                await asyncio.sleep(wait)

    async def _note(self, write: Awaitable[None]) -> None:
        try:
            await write
        except Exception as exc:
            log.error("could not update the outbox: %s", type(exc).__name__)
