"""The one pipeline every update goes through, whichever way it arrived (a webhook, `portabot
poll`): [wait for the sender's earlier updates] → [all or nothing: record the update id, step the
flow, carry out its effects, save the state, store the replies; on PostgreSQL an ordinary update
in one statement (`in_one_statement`), the rest in one transaction with the person locked
(`in_a_transaction`)] → send what the response cannot carry. A flow that keeps failing on an
update is given up, and the person told so. The caller only receives and acknowledges.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from portabot.channels.base import Channel
from portabot.conversation.engine import Step
from portabot.effects import CoreEffect, Storing
from portabot.features import Effect, EffectRun
from portabot.messages import UNSENT_KINDS, Conversation, Delivery, Kind, Message, Outcome, Update
from portabot.ordering import wait_turn
from portabot.outbound import REPLY_BUDGET
from portabot.replies import Reply, split
from portabot.storage.database import Conn
from portabot.storage.failures import note_failure
from portabot.storage.inbox import add_to_inbox
from portabot.storage.outbox import add_to_outbox, readdress_replies
from portabot.storage.people import (
    Person,
    absorb,
    admit,
    lock_person_of,
    person_of,
    read_person_of,
    readdress_accounts,
    save_person,
)
from portabot.storage.replies import forget_replies, remember_replies, take_replies
from portabot.storage.steps import MOVED, save_step
from portabot.storage.telling import Told
from portabot.storage.updates import record_update
from portabot.telling import Tell

if TYPE_CHECKING:
    from portabot.bot import Bot

log = logging.getLogger("portabot.pipeline")

MAX_EFFECTS = 16
"""Effects one update may cause (a guard against a flow that keeps asking)."""
MAX_STORED = 64
"""Messages to a person, timers and outside calls (the core effects) one update may store: they
ask for no result, so they do not count as effects, but each is rows in the update's transaction
(many people at once is a broadcast's job, not one step's)."""
MAX_FAILURES = 3
"""Deliveries of one update the flow may fail on before it is given up (on a channel that
delivers again; on one that does not, the first failure gives it up)."""
RESEND_AFTER = 2 * REPLY_BUDGET
"""Seconds after which a re-delivery proves that our answer never reached the platform: by then
the first copy has answered (within REPLY_BUDGET), moved its reply to the API, or died."""
SEEN_EVERY = 86_400.0
"""A person's `updated_at` is written at least this often, with the state or alone, so that
`portabot maintain` can tell idle web visitors from those who chat."""


async def run_update(bot: Bot, channel: Channel, update: Update) -> Outcome | None:
    """Process one parsed update and send the replies the channel's response cannot carry; the
    outcome holds those it can. None: nothing was committed (the database failed, or the flow
    did and the update is not given up yet), so the update must come again."""
    try:
        if not channel.in_order:
            await wait_turn(bot.db, update, bot.settings.order_window_ms / 1000)
        outcome = await process(bot, channel, update)
    except Exception as exc:
        given_up = await give_up(bot, channel, update, exc)
        if given_up is None:
            log.error(
                "%s update %s not processed: %s",
                update.platform,
                update.update_id,
                type(exc).__name__,
                exc_info=not is_database_error(exc),
            )
            return None
        outcome = given_up
    bot.remembered.handled(update)
    if outcome.duplicate:
        again = "with the replies its first answer carried" if outcome.inline else "again"
        log.info(
            "%s update %s seen before: acknowledged %s", update.platform, update.update_id, again
        )
    if outcome.calls and bot.runner is not None:  # a server runs them now, not at its next tick
        bot.runner.poke()
    deadline = time.monotonic() + REPLY_BUDGET
    await bot.outbound.deliver(outcome.later, deadline=deadline)
    await bot.outbound.catch_up(deadline)
    return outcome


async def process(bot: Bot, channel: Channel, update: Update) -> Outcome:
    """Everything an update changes, all or nothing; a re-delivery changes nothing. Raises what
    the flow or the database raised, with nothing committed. An ordinary update on PostgreSQL
    takes one statement (`in_one_statement`); the rest, and an ordinary one whose person moved
    on meanwhile, one transaction with the person locked."""
    message = update.message
    # A copy of an update this process has handled goes where its id is checked before any step.
    if (
        message is not None
        and message.kind not in UNSENT_KINDS
        and bot.db.dialect == "postgresql"
        and not bot.remembered.seen(update)
    ):
        outcome = await in_one_statement(bot, channel, update, message)
        if outcome is not None:
            return outcome
    return await in_a_transaction(bot, channel, update)


async def in_one_statement(
    bot: Bot, channel: Channel, update: Update, message: Message
) -> Outcome | None:
    """Step the person as this process remembers them (or as read, without a lock: one more
    round trip) and save it all in one statement, which changes nothing if the person moved on
    meanwhile. None: this update takes the transactional path (first contact, effects, a web
    visitor's inbox, a step that raised, or the person moved on: steps are pure, so stepping
    again is safe). A copy of an update another process handled is stepped here and found to be
    a copy by the statement: its step changes nothing."""
    account = message.account
    if bot.remembered.contended(account):
        return None  # another worker keeps changing them: wait for the lock instead
    now = bot.clock()
    person = bot.remembered.get(account)
    if person is None:
        async with bot.db.autocommit() as conn:
            person = await read_person_of(conn, account)
        if person is None:
            return None  # first contact: the transaction creates them
    try:
        step = await bot.flow.step(
            person.conversation, message, platforms=person.platforms, now=now
        )
    except Exception:
        # Counted as a failure only where the update id is checked first: the update may be a
        # copy of one given up (then acknowledged), and the flow's failure is told there.
        return None
    if step.effects:
        return None  # effects read and write inside the transaction, with the person locked
    inline, rest = address(channel, update, message, list(step.replies), notice=step.notice)
    if any(d.platform == "web" for d in rest):
        return None  # the web visitor's inbox
    changed = step.conversation != person.conversation or person.updated_at < now - SEEN_EVERY
    try:
        async with bot.db.autocommit() as conn:
            saved = await save_step(
                conn,
                update,
                account,
                person,
                step.conversation if changed else None,
                kept(channel, inline),
                rest,
                now,
                data_json=step.data_json,
            )
            # Not fresh but its own: the first try committed (its connection was lost before
            # the answer came), so what this step computed is what was saved.
            if not saved.fresh and not saved.own:
                return await copy_of_seen(conn, channel, update, now)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != MOVED:
            raise
        log.debug(
            "%s update %s: its person moved on, stepping again", update.platform, update.update_id
        )
        bot.remembered.moved(account)
        return None
    bot.remembered.saved(
        account, person, step.conversation, now, changed=changed, data_json=step.data_json
    )
    return Outcome(inline=inline, later=saved.later)


async def copy_of_seen(conn: Conn, channel: Channel, update: Update, now: float) -> Outcome:
    """A copy of an update already recorded: acknowledged, with the replies its first answer
    carried when that answer has had time to arrive and did not (see RESEND_AFTER)."""
    late = channel.inline_replies and await take_replies(conn, update, now - RESEND_AFTER)
    return Outcome(duplicate=True, inline=late or [])


async def in_a_transaction(bot: Bot, channel: Channel, update: Update) -> Outcome:
    """Everything an update changes, in one transaction, with its person locked."""
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
        # An event, a timer, a call: the update's platform is not the account's.
        if message.kind in UNSENT_KINDS:
            fresh = await record_update(conn, update.platform, update.update_id, now)
            found = await person_of(conn, message.account) if fresh else None
            if fresh and found is None:  # gone (merged, purged) since it was asked for
                log.warning("%s update %s: its person is gone", update.platform, update.update_id)
                return Outcome()
        else:
            fresh, found = await admit(conn, update.update_id, message.account, now)
        if not fresh:
            # Only a platform that never got our answer delivers again, but a copy sent while
            # the first was still in hand is no proof of that: the first may yet answer.
            return await copy_of_seen(conn, channel, update, now)
        first = person = found or await lock_person_of(conn, message.account, now, found_none=True)
        step = await bot.flow.step(first.conversation, message, platforms=first.platforms, now=now)
        replies = list(step.replies)
        effects = deque(step.effects)
        conversation = step.conversation
        notice = step.notice
        base = key_base(update)
        storing = Storing(bot, conn, person.id, message.account, base, now, Told())
        stored = carried = 0
        while effects:
            effect = effects.popleft()
            if isinstance(effect, CoreEffect):  # every flow's: no feature, no result
                if stored == MAX_STORED:
                    raise RuntimeError(
                        f"the flow asked for more than {MAX_STORED} messages, timers and calls"
                    )
                # Keys are the same at every attempt; the person may have changed (a merge).
                storing.person_id, storing.key = person.id, f"{base}:e{stored}"
                await effect.store(storing)
                stored += 1
                continue
            carried += 1
            if carried > MAX_EFFECTS:
                raise RuntimeError(f"the flow asked for more than {MAX_EFFECTS} effects")
            person, conversation, resumed = await _carry_out(
                bot, conn, effect, person, conversation, message, now
            )
            if resumed is not None:
                conversation = resumed.conversation
                notice = resumed.notice or notice  # a result route may answer the press
                replies.extend(resumed.replies)
                effects.extend(resumed.effects)
        if message.kind is Kind.EVENT:  # no chat to answer: the replies go to the person
            storing.person_id = person.id
            for position, reply in enumerate(replies):
                storing.key = f"{base}:{position}"
                await Tell(reply).store(storing)
            replies, notice = [], None
        for note in storing.notes:
            log.warning("%s update %s: %s", update.platform, update.update_id, note)
        told = storing.told
        seen_long_ago = person.updated_at < now - SEEN_EVERY
        saved = person.id != first.id or conversation != first.conversation or seen_long_ago
        # A save keeps the inline replies in its own statement: one round trip fewer.
        outcome = await store_replies(
            conn, channel, update, message, replies, now, notice=notice, keep=not saved
        )
        outcome.later.extend(told.sent)
        outcome.told = told.every
        outcome.calls = storing.calls
        if saved:
            keeping = (update, kept(channel, outcome.inline))
            await save_person(conn, person.id, conversation, now, keeping=keeping)
    if carried:  # a feature's effect may have changed who the person is (a merge)
        bot.remembered.forget(message.account)
    else:  # as saved, under the lock: the version is ours to count
        bot.remembered.saved(message.account, person, conversation, now, changed=saved)
    return outcome


async def give_up(bot: Bot, channel: Channel, update: Update, exc: Exception) -> Outcome | None:
    """The flow (or our code) failed on this update, not the database. The failure is counted;
    at MAX_FAILURES (at once on a channel that never delivers again) the update is given up:
    recorded as seen, left in `failed_updates` with its error, and the person gets the flow's
    failure text, so that one poisonous message neither holds up the rest (VK stops sending
    after several errors in a row) nor leaves its sender waiting for nothing. None: not given
    up (a database failure is never the update's fault)."""
    if is_database_error(exc):
        return None
    attempts = MAX_FAILURES if channel.redelivers else 1
    now = bot.clock()
    try:
        async with bot.db.transaction() as conn:
            error = f"{type(exc).__name__}: {exc}"
            if not await note_failure(conn, update, error, now, give_up_at=attempts):
                return None
            message, text = update.message, bot.flow.failure_text
            # An event's caller is told (the response); its person asked nothing.
            asked = message is not None and message.kind is not Kind.EVENT
            replies = [Reply(text)] if asked and text else []
            outcome = await store_replies(conn, channel, update, message, replies, now)
    except Exception as noting:
        log.error(
            "failure of %s update %s not noted: %s",
            update.platform,
            update.update_id,
            type(noting).__name__,
        )
        return None
    log.error(
        "%s update %s failed %s: given up, see failed_updates",
        update.platform,
        update.update_id,
        f"{attempts} times" if attempts > 1 else "on a channel that does not deliver again",
        exc_info=exc,
    )
    outcome.given_up = True
    return outcome


async def keep_for_later(bot: Bot, update: Update, replies: list[Delivery]) -> None:
    """The platform stopped waiting for the response that was to carry these replies: they go
    through the outbox and the API instead, and a re-delivery will not carry them."""
    try:
        async with bot.db.transaction() as conn:
            await forget_replies(conn, update)
            stored = await add_to_outbox(conn, replies, time.time())
        await bot.outbound.deliver(stored, deadline=time.monotonic() + REPLY_BUDGET)
    except Exception as exc:
        log.error("reply for a platform that stopped waiting not kept: %s", type(exc).__name__)


def address(
    channel: Channel,
    update: Update,
    message: Message,
    replies: list[Reply],
    *,
    notice: str | None = None,
) -> tuple[list[Delivery], list[Delivery]]:
    """Address the replies to the chat the message came from, each cut to the channel's length
    (a press answered first, with its notice; an edit of the pressed message where asked), and
    part them into those the channel's response can carry and the rest."""
    account = message.account
    platform, chat, thread = account.platform, account.chat_id, account.thread_id
    press, keyboard = message.press, message.keyboard
    deliveries: list[Delivery] = []
    # Keys are `update_id:position`, the same at every attempt (VK drops repeats by them).
    base = key_base(update)
    if press is not None and press.answer:
        key = f"{base}:0"
        answer = Delivery(platform, chat, notice or "", key, None, thread, None, None, press.answer)
        deliveries.append(answer)
    editing = press.message_id if press is not None else None
    for reply in replies:
        for piece in split(reply, channel.max_text, channel.max_caption):
            edit_id = editing if piece.edit else None
            editing = None if edit_id is not None else editing  # one edit: the rest are new
            whole = None if piece.plain_only else piece
            key = f"{base}:{len(deliveries)}"
            deliveries.append(
                Delivery(
                    platform, chat, piece.text, key, None, thread, whole, edit_id, None, keyboard
                )
            )
    # The response reaches the chat after what the API sends while the request runs: it carries
    # the answer to a press (which is not in the chat), else the last replies, so that they all
    # arrive in order.
    slots = len(deliveries) if channel.inline_replies is None else channel.inline_replies
    if slots >= len(deliveries):
        inline, rest = deliveries, []
    elif slots and deliveries[0].answer is not None:
        inline, rest = deliveries[:1], deliveries[1:]
    else:
        cut = len(deliveries) - slots
        inline, rest = deliveries[cut:], deliveries[:cut]
    for delivery in inline:  # plain text always may; what else may, the channel says
        if (delivery.reply or delivery.edit_id or delivery.answer) and not channel.rides_inline(
            delivery
        ):
            return [], deliveries
    return inline, rest


async def store_replies(
    conn: Conn,
    channel: Channel,
    update: Update,
    message: Message | None,
    replies: list[Reply],
    now: float,
    *,
    notice: str | None = None,
    keep: bool = True,
) -> Outcome:
    """The replies addressed (`address`): those the channel's response can carry stay inline
    (remembered for a late re-delivery, unless `keep` is False: the caller keeps `kept` of
    them), the rest go to the outbox, or for a web visitor to the inbox."""
    if message is None:
        return Outcome()
    inline, rest = address(channel, update, message, replies, notice=notice)
    # A web visitor's page collects what its own response did not carry (a timer's replies).
    waiting = [d for d in rest if d.platform == "web"]
    await add_to_inbox(conn, waiting, now)
    later = await add_to_outbox(conn, [d for d in rest if d.platform != "web"], now)
    if keep and kept(channel, inline):
        await remember_replies(conn, update, inline, now)
    return Outcome(inline=inline, later=later, kept=waiting)


def kept(channel: Channel, inline: list[Delivery]) -> list[Delivery]:
    """The inline replies to keep for a late re-delivery: all of them, where the channel's
    response carries any."""
    return inline if channel.inline_replies else []


def key_base(update: Update) -> str:
    """What the keys of an update's replies start with: its id, and where that id is not a
    chat's own (an event's, a timer's, a call's) its platform too, so that no two collide."""
    message = update.message
    if message is None or message.account.platform == update.platform:
        return update.update_id
    return f"{update.platform}:{update.update_id}"


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
    step = await flow.resume(
        run.conversation, result, platforms=run.person.platforms, now=now, message=message
    )
    return run.person, run.conversation, step


def is_database_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("asyncpg", "sqlite3", "sqlalchemy")) or isinstance(exc, OSError)
