"""The one pipeline every channel goes through:
verify → parse → [one transaction: record the update id, lock the person, step the flow, save the
state, store the replies to send] → send → acknowledge.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from portabot.channels.base import Answered, Channel, Rejected
from portabot.conversation.engine import Conversation, Step
from portabot.features import Effect, EffectRun
from portabot.messages import Delivery, Message, Outcome, Update
from portabot.ordering import wait_turn
from portabot.outbound import REPLY_BUDGET
from portabot.storage.database import Conn, Statement
from portabot.storage.failures import note_failure
from portabot.storage.outbox import add_to_outbox, readdress_replies
from portabot.storage.people import (
    Person,
    absorb,
    admit,
    lock_person_of,
    readdress_accounts,
    saving,
)
from portabot.storage.replies import forget_replies, remembering, take_replies
from portabot.storage.updates import record_update

if TYPE_CHECKING:
    from portabot.app import Bot

log = logging.getLogger("portabot.webhooks")

MAX_EFFECTS = 16
"""Effects one update may cause (a guard against a flow that keeps asking)."""
MAX_FAILURES = 3
"""Deliveries of one update the flow may fail on before it is given up."""
RESEND_AFTER = 2 * REPLY_BUDGET
"""Seconds after which a re-delivery proves that our answer never reached the platform: by then
the first copy has answered (within REPLY_BUDGET), moved its reply to the API, or died."""
SEEN_EVERY = 86_400.0
"""A person's `updated_at` is written at least this often, with the state or alone (riding with
the COMMIT), so that `portabot maintain` can tell idle web visitors from those who chat."""


async def handle(bot: Bot, channel: Channel, request: Request) -> Response:
    try:
        update = await channel.receive(request)
    except Rejected as rejected:
        kind = (channel.platform, rejected.status, rejected.reason)
        bot.rejections.warning(
            kind, "%s webhook: %d %s", channel.platform, rejected.status, rejected.reason
        )
        return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
    except Answered as answered:
        return answered.response
    except ClientDisconnect:
        # Gone (or too slow: the app's BodyDeadline answers 408 instead): nobody reads this.
        log.debug("%s webhook: the client left before its body was read", channel.platform)
        return JSONResponse({"error": "the client disconnected"}, status_code=400)
    except Exception as exc:  # e.g. the database that keeps the web chat's cookie key is down
        return unavailable(f"{channel.platform} delivery not read", exc)
    try:
        await wait_turn(bot.db, update, bot.settings.order_window_ms / 1000)
        outcome = await process(bot, channel, update)
    except Exception as exc:
        if await given_up(bot, update, exc):
            return channel.respond(update, [])
        return unavailable(f"{channel.platform} update {update.update_id} not processed", exc)
    if outcome.duplicate:
        again = "with the replies its first answer carried" if outcome.inline else "again"
        log.info(
            "%s update %s seen before: acknowledged %s", channel.platform, update.update_id, again
        )
    deadline = time.monotonic() + REPLY_BUDGET
    await bot.outbound.deliver(outcome.later, deadline=deadline)
    await bot.outbound.catch_up(deadline)
    if outcome.inline and channel.inline_replies and await request.is_disconnected():
        # The platform gave up waiting: the reply that would have ridden in the response goes
        # through the API instead, and the re-delivery will not carry it.
        await keep_for_later(bot, update, outcome.inline)
    return channel.respond(update, outcome.inline)


async def keep_for_later(bot: Bot, update: Update, replies: list[Delivery]) -> None:
    try:
        async with bot.db.transaction() as conn:
            await forget_replies(conn, update)
            stored = await add_to_outbox(conn, replies, time.time())
        await bot.outbound.deliver(stored, deadline=time.monotonic() + REPLY_BUDGET)
    except Exception as exc:
        log.error("reply for a platform that stopped waiting not kept: %s", type(exc).__name__)


async def given_up(bot: Bot, update: Update, exc: Exception) -> bool:
    """The flow (or our code) failed on this update, not the database. The platform delivers it
    again; after MAX_FAILURES it is acknowledged and left in `failed_updates` with its error, so
    that one poisonous message does not hold up the rest (VK stops sending after several errors
    in a row). A database failure is never the update's fault: False."""
    if _is_database_error(exc):
        return False
    try:
        gave_up = await note_failure(
            bot.db,
            update.platform,
            update.update_id,
            f"{type(exc).__name__}: {exc}",
            time.time(),
            give_up_at=MAX_FAILURES,
        )
    except Exception as noting:
        log.error(
            "failure of %s update %s not noted: %s",
            update.platform,
            update.update_id,
            type(noting).__name__,
        )
        return False
    if gave_up:
        log.error(
            "%s update %s failed %d times: given up, see failed_updates",
            update.platform,
            update.update_id,
            MAX_FAILURES,
            exc_info=exc,
        )
    return gave_up


def unavailable(what: str, exc: Exception) -> Response:
    """Nothing was committed: a 5xx makes the platform deliver the update again."""
    log.error("%s: %s", what, type(exc).__name__, exc_info=not _is_database_error(exc))
    return JSONResponse({"error": "temporarily unavailable, retry"}, status_code=503)


async def process(bot: Bot, channel: Channel, update: Update) -> Outcome:
    """Everything an update changes, in one transaction; a re-delivery changes nothing."""
    now = bot.clock()
    async with bot.db.transaction() as conn:
        message = update.message
        if message is None:
            fresh = await record_update(conn, update.platform, update.update_id, now)
            moved = update.chat_moved
            if fresh and moved is not None:  # the chat's other notice then finds nothing to move
                for readdress in (readdress_accounts, readdress_replies):
                    await readdress(conn, update.platform, moved.old_chat_id, moved.new_chat_id)
            return Outcome(duplicate=not fresh)
        fresh, found = await admit(conn, update.update_id, message.account, now)
        if not fresh:
            # Only a platform that never got our answer delivers again, but a copy sent while
            # the first was still in hand is no proof of that: the first may yet answer.
            late = channel.inline_replies and await take_replies(conn, update, now - RESEND_AFTER)
            return Outcome(duplicate=True, inline=late or [])
        first = person = found or await lock_person_of(conn, message.account, now, found_none=True)
        step = await bot.flow.step(first.conversation, message, platforms=first.platforms, now=now)
        replies = list(step.replies)
        effects = deque(step.effects)
        conversation = step.conversation
        for _ in range(MAX_EFFECTS):
            if not effects:
                break
            effect = effects.popleft()
            person, conversation, resumed = await _carry_out(
                bot, conn, effect, person, conversation, message, now
            )
            if resumed is not None:
                conversation = resumed.conversation
                replies.extend(resumed.replies)
                effects.extend(resumed.effects)
        else:
            raise RuntimeError(f"the flow asked for more than {MAX_EFFECTS} effects")
        chat, thread = message.account.chat_id, message.account.thread_id
        deliveries = [
            Delivery(
                update.platform, chat, reply.text, f"{update.update_id}:{position}", None, thread
            )
            for position, reply in enumerate(replies)
        ]
        inline = len(deliveries) if channel.inline_replies is None else channel.inline_replies
        later = await add_to_outbox(conn, deliveries[inline:], now)
        last: list[Statement] = []  # they travel with the COMMIT
        seen_long_ago = person.updated_at < now - SEEN_EVERY
        if person.id != first.id or conversation != first.conversation or seen_long_ago:
            last.append(saving(person.id, conversation, now))
        if channel.inline_replies and deliveries[:inline]:
            last.append(remembering(update, deliveries[:inline], bot.clock()))
        await conn.commit_with(*last)
    return Outcome(inline=deliveries[:inline], later=later)


async def _carry_out(
    bot: Bot,
    conn: Conn,
    effect: Effect[Any],
    person: Person,
    conversation: Conversation,
    message: Message,
    now: float,
) -> tuple[Person, Conversation, Step | None]:
    """Do what the flow asked, through the handler a feature registered for the effect; returns
    who the conversation continues with and the flow's answer to the result (None: no result)."""
    flow = bot.flow
    handler = flow.handler_for(effect)

    async def merge_into(kept: Person) -> None:
        absorbed = run.person
        for feature in flow.features:
            await feature.merge(conn, kept.id, absorbed.id)
        await absorb(conn, kept=kept.id, absorbed=absorbed.id)
        platforms = tuple(sorted({*kept.platforms, *absorbed.platforms}))
        run.conversation = flow.merge(kept.conversation, run.conversation)
        run.person = Person(kept.id, kept.conversation, platforms, kept.updated_at)

    run = EffectRun(conn, person, conversation, message, now, bot.settings, merge_into)
    result = await handler(run, effect)
    if result is None:
        return run.person, run.conversation, None
    step = await flow.resume(run.conversation, result, platforms=run.person.platforms, now=now)
    return run.person, run.conversation, step


def _is_database_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("asyncpg", "sqlite3", "sqlalchemy")) or isinstance(exc, OSError)
