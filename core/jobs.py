"""Work that is due without a message: timers, replies sent later, outside calls, and replies
waiting in the outbox. `portabot tick`, the Lambda schedule and a running server's own loop all
run `run_due`; any number of them may run at once, and each job is done once.

A job is claimed with a lease (another runner skips it), then done through the one pipeline: a
timer is an update of its own (platform "timer", the job's id) stepping the flow with a
Kind.TIMER message; a call first runs the service outside any transaction, keeps what it
returned, then steps the flow with Kind.RETURNED (or Kind.FAILED once every attempt failed) as
the update ("call", the job's id). The update id makes the step happen once even if two runners
got the job (a lease ran out); the job is deleted once its step is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portabot.calls import ATTEMPTS, CallFailed, attempt, describe_failure, retry_after
from portabot.channels.base import Unanswered
from portabot.messages import Delivery, Kind, Message, Outcome, Update
from portabot.replies import Reply
from portabot.storage.jobs import (
    CALL,
    REPLY,
    TIMER,
    Job,
    claim_jobs,
    finish_job,
    keep_outcome,
    retry_job,
)

if TYPE_CHECKING:
    from portabot.bot import Bot
    from portabot.channels.base import Channel

log = logging.getLogger("portabot.jobs")

BATCH = 100
"""Jobs one claim takes."""
LEASE = 60.0
"""Seconds a runner holds a timer or a reply before another may take it (it died)."""
CALL_LEASE_MARGIN = 30.0
"""A call is held for its timeout and this much more: no one calls again while it may answer."""
CALLS_AT_ONCE = 8
"""Outside calls one runner waits on at once."""
RUN_FOR = 45.0
"""Seconds one run keeps claiming (a per-minute schedule's runs do not pile up)."""

Step = Callable[["Channel", Update], Awaitable[Outcome | None]]
"""How a job's update goes through the pipeline: `run_update` (which sends its replies), or the
harness's own."""


@dataclass(slots=True)
class DueRun:
    """What one run did."""

    timers: int = 0
    replies: int = 0
    answered: int = 0
    failed: int = 0
    retrying: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    """What each job's update (or reply) stored, in the order done."""
    unsent: list[Delivery] = field(default_factory=list)
    """Replies sent later, stored in the outbox, not yet sent (the caller sends them)."""

    def lines(self) -> list[str]:
        calls = f"calls: {self.answered} answered, {self.failed} failed"
        return [
            f"timers: {self.timers} fired; replies sent later: {self.replies}",
            f"{calls}, {self.retrying} to try again",
        ]


async def run_due(bot: Bot) -> list[str]:
    """Run what is due now, once whoever else runs it at the same moment; one line per kind of
    work done."""
    from portabot.pipeline import run_update

    async def step(channel: Channel, update: Update) -> Outcome | None:
        return await run_update(bot, channel, update)

    done = await run_jobs(bot, step)
    await bot.outbound.deliver(done.unsent)
    sent, failed = await bot.outbound.deliver_all_due()
    return [*done.lines(), f"outbox: sent {sent}, failed {failed}"]


async def run_jobs(bot: Bot, step: Step, *, run_for: float = RUN_FOR) -> DueRun:
    """Claim and do the due jobs (timers and replies one after another, calls several at once)
    until none is left or `run_for` seconds have passed."""
    done = DueRun()
    until = time.monotonic() + run_for
    calling = asyncio.Semaphore(CALLS_AT_ONCE)
    longest = max((s.timeout for s in bot.flow.services.values()), default=0.0)
    lease = max(LEASE, longest + CALL_LEASE_MARGIN)
    while time.monotonic() < until:
        jobs = await claim_jobs(bot.db, bot.clock(), lease, BATCH)
        calls = [job for job in jobs if job.kind == CALL]
        for job in jobs:
            if job.kind == TIMER:
                await _fire(bot, step, job, done)
            elif job.kind == REPLY:
                await _send_later(bot, job, done)
        await asyncio.gather(*(_call(bot, step, job, done, calling) for job in calls))
        if len(jobs) < BATCH:
            break
    return done


def _update(
    bot: Bot, job: Job, kind: Kind, platform: str, data: dict[str, Any]
) -> tuple[Channel, Update]:
    message = Message(job.account, kind, at=bot.clock(), event=job.name, data=data)
    channel = Unanswered(platform, bot.channels.get(job.account.platform))
    return channel, Update(platform, str(job.id), message, over_https=True)


async def _fire(bot: Bot, step: Step, job: Job, done: DueRun) -> None:
    channel, update = _update(bot, job, Kind.TIMER, "timer", job.data)
    if await _step(bot, step, channel, update, job, done):
        done.timers += 1


async def _step(
    bot: Bot, step: Step, channel: Channel, update: Update, job: Job, done: DueRun
) -> bool:
    """The job's update through the pipeline, then the job deleted; False: the step did not
    commit (the database, or a flow that failed and is not given up yet): a later run tries
    again once the lease is over."""
    outcome = await step(channel, update)
    if outcome is None:
        return False
    done.outcomes.append(outcome)
    async with bot.db.transaction() as conn:
        await finish_job(conn, job.id)
    return not outcome.duplicate


async def _send_later(bot: Bot, job: Job, done: DueRun) -> None:
    """A reply sent later: stored for sending and the job deleted, in one transaction."""
    from portabot.pipeline import store_replies

    channel, update = _update(bot, job, Kind.TIMER, "timer", {})
    async with bot.db.transaction() as conn:
        if not await finish_job(conn, job.id):
            return
        reply = Reply.from_json(job.data)
        outcome = await store_replies(conn, channel, update, update.message, [reply], bot.clock())
    done.outcomes.append(outcome)
    done.unsent.extend(outcome.later)
    done.replies += 1


async def _call(bot: Bot, step: Step, job: Job, done: DueRun, calling: asyncio.Semaphore) -> None:
    outcome = job.outcome
    if outcome is None:  # not called yet, or every earlier try failed
        service = bot.flow.services.get(job.name)
        tries = job.attempts
        if service is None:
            outcome = {"error": f"no service {job.name!r} in this deployment's flow"}
        elif tries > ATTEMPTS:  # the runner stopped during the last one (killed, timed out)
            outcome = {"error": f"no answer in {ATTEMPTS} attempts"}
        else:
            async with calling:
                try:
                    outcome = await attempt(service.function, job.data, service.timeout)
                except Exception as exc:
                    why = describe_failure(exc, service.timeout)
                    log.warning(
                        "call %s (job %d) failed, attempt %d of %d: %s",
                        job.name,
                        job.id,
                        tries,
                        ATTEMPTS,
                        why,
                    )
                    if tries < ATTEMPTS and not isinstance(exc, CallFailed):
                        await retry_job(bot.db, job.id, why, bot.clock() + retry_after(tries))
                        done.retrying += 1
                        return
                    outcome = {"error": why}
        await keep_outcome(bot.db, job.id, outcome)
    kind = Kind.FAILED if "error" in outcome else Kind.RETURNED
    channel, update = _update(bot, job, kind, "call", outcome)
    if await _step(bot, step, channel, update, job, done):
        if kind is Kind.FAILED:
            done.failed += 1
        else:
            done.answered += 1
