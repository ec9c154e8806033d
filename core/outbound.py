"""Calls to the platforms' APIs for replies that did not fit in the webhook response."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from portabot.channels.base import ApiError, Channel
from portabot.messages import Delivery
from portabot.storage.database import Database
from portabot.storage.outbox import LEASE, claim_due, mark_failed, mark_sent, postpone
from portabot.storage.pacing import Pace, hold, reserve

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
SEND_WITHIN = LEASE - 20.0
"""Seconds from a reply's lease (taken when it is stored or claimed) within which its send time
must fall; a later one gives the reply back, due then: a send takes up to 10 s, a retry another
10, and the lease must not end while we still hold it (another sender would send it too)."""
SEND_TIME = 1.0
"""Seconds kept free before a caller's deadline for the send itself, after its send time."""


class Postponed(Exception):
    """The platform's limits allow the send no earlier than `until` (Unix time), later than the
    caller can wait: the reply stays in the outbox, due then."""

    def __init__(self, until: float) -> None:
        super().__init__(f"no send time before {until}")
        self.until = until


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
        self,
        db: Database,
        channels: Mapping[str, Channel],
        catch_up_interval: float = 60.0,
        *,
        paced: bool = True,
    ) -> None:
        self.db = db
        self.channels = channels
        self.paced = paced
        """Whether sends take their time in the shared schedules (SEND_PACING)."""
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
        self,
        deliveries: list[Delivery],
        *,
        deadline: float | None = None,
        leased_at: float | None = None,
    ) -> tuple[int, int]:
        """Send in order; what cannot be sent (before `deadline`, on the monotonic clock) stays in
        the outbox with the error noted and a time to try again, and what the platforms' limits
        let go only later than SEND_WITHIN of their lease (`leased_at`, by default now) stays due
        then. Returns (sent, failed); those put off count in neither."""
        latest = (time.time() if leased_at is None else leased_at) + SEND_WITHIN
        if deadline is not None:
            latest = min(latest, time.time() + deadline - time.monotonic() - SEND_TIME)
        sent = failed = 0
        for delivery in deliveries:
            assert delivery.outbox_id is not None
            try:
                await self.send_before(delivery, deadline, latest)
            except Postponed as later:
                await self._note(postpone(self.db, delivery.outbox_id, later.until))
            except ApiError as exc:
                log.warning("reply %d stays in the outbox: %s", delivery.outbox_id, exc)
                failed += 1
                noted = mark_failed(
                    self.db, delivery.outbox_id, str(exc), time.time(), retryable=exc.retryable
                )
                await self._note(noted)
            else:
                sent += 1
                await self._note(mark_sent(self.db, delivery.outbox_id, time.time()))
        return sent, failed

    async def send_before(
        self, delivery: Delivery, deadline: float | None, latest: float | None = None
    ) -> None:
        if deadline is None:
            return await self.send(delivery, latest)
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                await self.send(delivery, latest)
        except TimeoutError:
            raise ApiError("left for later: the request's time for replies ran out") from None

    async def deliver_due(
        self, limit: int = 100, *, deadline: float | None = None
    ) -> tuple[int, int]:
        """Send replies whose time has come (earlier failures); returns (sent, failed)."""
        return await self.deliver(await claim_due(self.db, time.time(), limit), deadline=deadline)

    async def deliver_all_due(self, batch: int = 100) -> tuple[int, int]:
        """Send every reply whose time has come, `batch` at a time (what fails or is put off now
        is due later, so this ends); returns (sent, failed)."""
        sent = failed = 0
        while deliveries := await claim_due(self.db, time.time(), batch):
            done, missed = await self.deliver(deliveries)
            sent, failed = sent + done, failed + missed
        return sent, failed

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

    async def send(self, delivery: Delivery, latest: float | None = None) -> None:
        """Send one reply, each attempt at a time the platform's limits allow (reserved in the
        schedules every sender shares), waiting for it until `latest` (Unix time; by default
        SEND_WITHIN from now); raises Postponed when it is later, ApiError when sending fails."""
        channel = self.channels.get(delivery.platform)
        if channel is None:
            raise ApiError(f"{delivery.platform} is not configured here: its token is not set")
        session = await self.session()
        paces = channel.paces(delivery) if self.paced else ()
        latest = time.time() + SEND_WITHIN if latest is None else latest
        turn_needed = True
        for attempt in range(1, ATTEMPTS + 1):
            if turn_needed:
                await self._wait_turn(paces, latest)
            try:
                await channel.send(session, delivery)
                return
            except ApiError as exc:
                held = channel.held_back(delivery, exc) if exc.retry_after is not None else ()
                if held:  # every sender pauses, and this one's next turn comes after it
                    await self._hold(held, time.time() + float(exc.retry_after or 0))
                if attempt == ATTEMPTS or not exc.retryable:
                    raise
                # A send that failed otherwise (a 5xx, the network) delivered nothing: the
                # retry keeps its time rather than taking another (a group's is 3.5 s away).
                turn_needed = bool(held)
                if held:
                    continue
                wait = exc.retry_after if exc.retry_after is not None else 0.25 * 2**attempt
                if wait > MAX_WAIT:
                    raise
                await asyncio.sleep(wait)

    async def _wait_turn(self, paces: Sequence[Pace], latest: float) -> None:
        """Reserve the send's time and wait for it; raises Postponed when it is after `latest`."""
        if not paces:
            return
        try:
            slot = await reserve(self.db, paces, time.time(), latest)
        except Exception as exc:  # the database: the reply waits in the outbox for it
            raise ApiError(f"no send time reserved: {type(exc).__name__}") from None
        if not slot.taken:
            raise Postponed(slot.at)
        delay = slot.at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _hold(self, paces: Sequence[Pace], until: float) -> None:
        try:
            await hold(self.db, paces, until)
        except Exception as exc:
            log.error("could not pause the send schedules: %s", type(exc).__name__)

    async def _note(self, write: Awaitable[object]) -> None:
        try:
            await write
        except Exception as exc:
            log.error("could not update the outbox: %s", type(exc).__name__)
