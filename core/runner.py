"""What is due, run without an outside scheduler: `DueRunner`, the own loop of a running server
(and of `portabot poll`), and `run_every`, the loop of `portabot tick --every` (a Heroku clock
dyno). All call `portabot.jobs.run_due`; none is imported before a server or command starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import signal
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from portabot.checks import describe
from portabot.storage.schema import SchemaBehind

if TYPE_CHECKING:
    from portabot.bot import Bot
    from portabot.settings import Settings

log = logging.getLogger("portabot.runner")

JITTER = 0.1
"""Each wait is the interval ±10%: processes that started together drift apart."""
_COUNT = re.compile(r"(?<![\w.])[1-9]\d*")


def did_something(lines: Sequence[str]) -> bool:
    """Whether a run's lines count anything but zeros ("outbox: sent 0, failed 0" is nothing):
    runs that did nothing are not logged, or a server would write a line every few seconds."""
    return any(_COUNT.search(line) for line in lines)


@contextlib.asynccontextmanager
async def running(bot: Bot) -> AsyncIterator[None]:
    """`bot.runner` running what is due every TICK_SECONDS while the body runs (a server's
    lifespan, `portabot poll`), cancelled when it ends; with TICK_SECONDS=0, nothing."""
    if not bot.settings.tick_seconds:
        yield
        return
    runner = bot.runner = DueRunner(bot, bot.settings.tick_seconds)
    runner.start()
    try:
        yield
    finally:
        bot.runner = None
        await runner.stop()


class DueRunner:
    """Runs `run_due(bot)` about every `seconds` while a server runs, one run at a time. The
    first run comes at a random point of the first interval, so that the workers a server forks
    at once do not tick in step. A failed run is one log line; the next run tries again."""

    def __init__(self, bot: Bot, seconds: float) -> None:
        self.bot = bot
        self.seconds = seconds
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Begin on the running event loop (the server's, from its lifespan)."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="portabot: what is due")

    def poke(self) -> None:
        """Run as soon as possible: after the run in progress, if there is one (several pokes
        meanwhile make one run). From any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poked.set)

    async def stop(self) -> None:
        """Cancel the loop, a run in progress included (what it leased is leased for a minute,
        then anyone's), and wait until it has ended."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        wait = random.uniform(0, self.seconds)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._poked.wait()
            self._poked.clear()  # a poke from here on asks for another run
            await self.run_once()
            wait = self.seconds * random.uniform(1 - JITTER, 1 + JITTER)

    async def run_once(self) -> None:
        await run_logged(self.bot)


async def run_logged(bot: Bot) -> None:
    """One run of what is due: a line if it did something, a line if it failed, never a raise."""
    from portabot.jobs import run_due  # its work's modules, not on the app's import path

    try:
        await bot.schema.ensure()
        lines = await run_due(bot)
    except SchemaBehind:
        return  # the schema check has said so, once; a release's migration ends it
    except Exception as exc:  # the database away, say: the next run tries again
        log.warning("running what is due failed: %s", describe(exc))
        return
    done = [line for line in lines if did_something([line])]  # the kinds of work it did
    if done:
        log.info("what is due: %s", "; ".join(done))


def run_every(settings: Settings, seconds: float) -> int:
    """`portabot tick --every SECONDS`: run what is due at every multiple of `seconds` on the
    clock until SIGTERM or SIGINT, which let the run in progress finish; returns the runs made."""
    return asyncio.run(_run_every(settings, seconds))


async def _run_every(settings: Settings, seconds: float) -> int:
    from portabot.bot import Bot

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    bot = Bot(settings)
    runs = 0
    try:
        while not stopping.is_set():
            await run_logged(bot)
            runs += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds - time.time() % seconds):
                    await stopping.wait()
    finally:
        await bot.close()
    return runs
