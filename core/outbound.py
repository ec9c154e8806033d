"""Calls to the platforms' APIs for replies that did not fit in the webhook response."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from portabot.channels.base import ApiError, Channel
from portabot.messages import Delivery
from portabot.storage.database import Database
from portabot.storage.outbox import claim_due, mark_failed, mark_sent

if TYPE_CHECKING:
    from aiohttp import ClientSession

log = logging.getLogger("portabot.outbound")
T = TypeVar("T")

ATTEMPTS = 3
CATCH_UP_BATCH = 10
REPLY_BUDGET = 8.0
"""Seconds a webhook request may spend sending replies through the APIs after its commit: well
under gunicorn's graceful_timeout, Heroku's 30 s router and the Lambda template's 15 s, so a
slow API cannot get a request killed after its commit (which would lose its inline reply)."""
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
    def __init__(
        self, db: Database, channels: Mapping[str, Channel], catch_up_interval: float = 60.0
    ) -> None:
        self.db = db
        self.channels = channels
        self.catch_up_interval = catch_up_interval
        self._last_catch_up = time.monotonic()  # a fresh process waits one interval first
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

    async def deliver(
        self, deliveries: list[Delivery], *, deadline: float | None = None
    ) -> tuple[int, int]:
        """Send in order; what cannot be sent (before `deadline`, on the monotonic clock) stays in
        the outbox with the error noted and a time to try again. Returns (sent, failed)."""
        sent = 0
        for delivery in deliveries:
            assert delivery.outbox_id is not None
            try:
                await self.send_before(delivery, deadline)
            except ApiError as exc:
                log.warning("reply %d stays in the outbox: %s", delivery.outbox_id, exc)
                failed = mark_failed(
                    self.db, delivery.outbox_id, str(exc), time.time(), retryable=exc.retryable
                )
                await self._note(failed)
            else:
                sent += 1
                await self._note(mark_sent(self.db, delivery.outbox_id, time.time()))
        return sent, len(deliveries) - sent

    async def send_before(self, delivery: Delivery, deadline: float | None) -> None:
        if deadline is None:
            return await self.send(delivery)
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                await self.send(delivery)
        except TimeoutError:
            raise ApiError("left for later: the request's time for replies ran out") from None

    async def deliver_due(
        self, limit: int = 100, *, deadline: float | None = None
    ) -> tuple[int, int]:
        """Send replies whose time has come (earlier failures); returns (sent, failed)."""
        return await self.deliver(await claim_due(self.db, time.time(), limit), deadline=deadline)

    async def deliver_all_due(self, batch: int = 100) -> tuple[int, int]:
        """Send every reply whose time has come, `batch` at a time (what fails now is scheduled
        for later, so this ends); returns (sent, failed)."""
        sent = failed = 0
        while True:
            done, missed = await self.deliver_due(batch)
            if done + missed == 0:
                return sent, failed
            sent, failed = sent + done, failed + missed

    async def catch_up(self, deadline: float) -> None:
        """At most every `catch_up_interval` seconds per process, a request with time to spare
        also sends a few replies left over from earlier failures (nothing runs after a response
        on Lambda, so requests are when it can happen)."""
        now = time.monotonic()
        if now - self._last_catch_up < self.catch_up_interval or now >= deadline:
            return
        self._last_catch_up = now
        try:
            await self.deliver_due(CATCH_UP_BATCH, deadline=deadline)
        except Exception as exc:  # the update itself is done: never fail it for this
            log.warning("outbox catch-up stopped: %s", type(exc).__name__)

    async def send(self, delivery: Delivery) -> None:
        channel = self.channels.get(delivery.platform)
        if channel is None:
            raise ApiError(f"{delivery.platform} is not configured here: its token is not set")
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

    async def _note(self, write: Awaitable[object]) -> None:
        try:
            await write
        except Exception as exc:
            log.error("could not update the outbox: %s", type(exc).__name__)
