"""`portabot poll`: Telegram's updates by long polling (getUpdates) instead of a webhook, through
the webhook's own pipeline, so that every update is still processed exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from portabot import __version__
from portabot.bot import Bot
from portabot.channels.base import ApiError, Rejected
from portabot.channels.telegram import ALLOWED_UPDATES, API_TIMEOUT, TelegramChannel
from portabot.conversation.loader import flow_summary
from portabot.logs import configure_logging
from portabot.pipeline import run_update
from portabot.runner import running
from portabot.settings import Settings, obscure_url
from portabot.storage.schema import SchemaBehind

log = logging.getLogger("portabot.polling")
T = TypeVar("T")

BATCH = 100
"""Updates one getUpdates call asks for (Telegram's most)."""
FIRST_PAUSE = 0.5
LONGEST_PAUSE = 60.0


class PollingError(Exception):
    """Polling cannot start or go on; the message is one line, `status` the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class PolledTelegramChannel(TelegramChannel):
    """Telegram without a webhook response for a reply to ride in: every reply goes through the
    outbox and the Bot API."""

    inline_replies = 0
    in_order = True  # one getUpdates batch at a time, in update_id order


class Backoff:
    """Pauses after failures: FIRST_PAUSE doubling up to LONGEST_PAUSE, or what Telegram asks."""

    def __init__(self) -> None:
        self.pause = 0.0

    def after(self, retry_after: float | None = None) -> float:
        self.pause = min(LONGEST_PAUSE, max(FIRST_PAUSE, self.pause * 2))
        return float(retry_after) if retry_after is not None else self.pause

    def reset(self) -> None:
        self.pause = 0.0


class Poller:
    """Fetches, processes and acknowledges updates until stopped. Telegram forgets an update only
    when a later getUpdates passes an offset beyond it, and the offset moves past an update only
    once its transaction has committed: a crash re-fetches it, and the pipeline skips it as a
    duplicate if it was done."""

    def __init__(self, bot: Bot, channel: PolledTelegramChannel, timeout: int) -> None:
        self.bot = bot
        self.channel = channel
        self.timeout = timeout
        self.offset: int | None = None
        self.handled = self.seen_before = 0
        self.stopping = asyncio.Event()
        self.backoff = Backoff()

    def stop(self) -> None:
        self.stopping.set()

    async def ask(self, method: str, payload: dict[str, Any], timeout: float = API_TIMEOUT) -> Any:
        """The method's result, asked again after a temporary failure (the network, a 5xx, a 429
        after its retry_after); None once stopped. Any other failure ends polling."""
        session = await self.bot.outbound.session()
        while not self.stopping.is_set():
            call = self.channel.call(session, method, payload, timeout=timeout)
            try:
                result = await self.unless_stopped(call)
            except ApiError as exc:
                if not exc.retryable:
                    raise PollingError(str(exc)) from None
                await self.pause(self.backoff.after(exc.retry_after), str(exc))
                continue
            self.backoff.reset()
            return result
        return None

    async def make_way(self, drop_webhook: bool) -> None:
        """Telegram refuses getUpdates while a webhook is set: refuse too, or remove it."""
        info = await self.ask("getWebhookInfo", {})
        url = info.get("url") if isinstance(info, dict) else None
        if not url:
            return
        if not drop_webhook:
            raise PollingError(
                f"Telegram delivers to the webhook {url}; polling cannot run beside it: "
                "serve the webhook, or pass --drop-webhook to remove it",
                status=2,
            )
        if await self.ask("deleteWebhook", {}):  # pending updates stay, for getUpdates
            print(f"webhook {url} removed; the updates waiting for it are kept", flush=True)

    async def run(self) -> None:
        while not self.stopping.is_set():
            payload: dict[str, Any] = {
                "timeout": self.timeout,
                "limit": BATCH,
                "allowed_updates": list(ALLOWED_UPDATES),
            }
            if self.offset is not None:
                payload["offset"] = self.offset
            updates = await self.ask("getUpdates", payload, timeout=self.timeout + API_TIMEOUT)
            for item in updates if isinstance(updates, list) else []:
                if not await self.handle(item) or self.stopping.is_set():
                    break

    async def handle(self, item: Any) -> bool:
        """Process one update; False when it could not be committed (fetched again later)."""
        try:
            update = self.channel.parse(item)
        except Rejected as rejected:
            log.warning("telegram update skipped: %s", rejected.reason)
            self.advance(skipped_offset(item))
            return True
        outcome = await run_update(self.bot, self.channel, update)
        if outcome is None:
            await self.pause(self.backoff.after(), f"telegram update {update.update_id} kept")
            return False
        self.advance(int(update.update_id) + 1)
        if outcome.duplicate:
            self.seen_before += 1
        elif not outcome.given_up:
            self.handled += 1
        return True

    def advance(self, offset: int) -> None:
        """Move the offset forward only: a repeat of an old update must not take it back."""
        self.offset = offset if self.offset is None else max(self.offset, offset)

    async def unless_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """The work's result, or None when a stop came first (the work is then cancelled)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def pause(self, seconds: float, why: str) -> None:
        log.warning("%s; trying again in %g s", why, seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)


def skipped_offset(item: Any) -> int:
    """The offset past an update we cannot read; without an update id nothing can be skipped."""
    update_id = item.get("update_id") if isinstance(item, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise PollingError("Telegram's getUpdates returned an update without an update_id")
    return update_id + 1


def run_polling(settings: Settings, *, timeout: int, drop_webhook: bool) -> None:
    """Poll until Ctrl-C or SIGTERM; either lets the update in hand finish first."""
    configure_logging(settings.log_level)
    asyncio.run(_poll(settings, timeout, drop_webhook))


async def _poll(settings: Settings, timeout: int, drop_webhook: bool) -> None:
    bot = Bot(settings)
    poller = Poller(bot, PolledTelegramChannel(settings), timeout)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, poller.stop)
    try:
        try:
            await bot.schema.ensure()  # PostgreSQL is migrated by a release step, not by us
        except SchemaBehind as exc:
            raise PollingError(str(exc), status=2) from None
        await poller.make_way(drop_webhook)
        print(f"portabot {__version__}: polling Telegram for updates; Ctrl-C stops", flush=True)
        print(f"  {flow_summary(settings, bot.flow)}", flush=True)
        print(f"  database {obscure_url(settings.database_url)}", flush=True)
        async with running(bot):  # what is due, every TICK_SECONDS, beside the polling
            await poller.run()
    finally:
        await bot.close()
    print(f"stopped: {poller.handled} handled, {poller.seen_before} seen before", flush=True)
