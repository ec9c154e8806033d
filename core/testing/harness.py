"""`Harness`: a flow, with its features and effects, run through the real pipeline on a throwaway
SQLite database from a plain synchronous test; people say things, read replies and state back."""

from __future__ import annotations

import asyncio
import difflib
import itertools
import shutil
import tempfile
from collections.abc import Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from portabot.bot import Bot
from portabot.channels.base import Channel
from portabot.conversation.engine import Flow
from portabot.conversation.routing import EVENT_NAME
from portabot.events import CHANNEL as EVENTS
from portabot.jobs import run_jobs
from portabot.messages import (
    Account,
    Attachment,
    Conversation,
    Delivery,
    Kind,
    Message,
    Outcome,
    Press,
    Update,
    parse_command,
)
from portabot.pipeline import process
from portabot.replies import Button, Reply
from portabot.settings import Settings
from portabot.storage.migrate import upgrade
from portabot.storage.outbox import mark_sent
from portabot.storage.people import Person, person_of
from portabot.storage.schema import feature_tables

T = TypeVar("T")

START = 1_767_225_600.0
"""Where a harness's clock starts (2026-01-01 00:00 UTC): the same in every run."""

CHANNELS: dict[str, Any] = {
    "telegram_token": "0:harness",
    "telegram_bot_username": "harness_bot",
    "vk_token": "harness",
    "vk_group_id": 1,
    "session_secret": "harness",
}
"""Settings that give the bot every channel; nothing in a harness reaches their APIs."""


async def _process(bot: Bot, update: Update) -> Outcome:
    """The one place the harness meets the pipeline: what the webhook endpoint and the poller do
    with an update once it is parsed (the transaction, effects, merge, the outbox)."""
    channel = EVENTS if update.platform == EVENTS.platform else bot.channels[update.platform]
    return await process(bot, channel, update)


class Harness:
    """`with Harness(flow, bot_passphrase="...") as bot:` — settings by their field names (as in
    Settings; the defaults otherwise, whatever the environment says). No flow: the one BOT_FLOW
    names, the built-in bot by default. The database is a fresh SQLite file, migrated on entry
    (the features' tables too) and removed on exit; the clock starts at START and moves only with
    `advance`."""

    def __init__(self, flow: Flow | None = None, *, start: float = START, **settings: Any) -> None:
        if "database_url" in settings:
            raise ValueError("a Harness makes its own database: leave out database_url")
        for name in settings:
            if name not in Settings.model_fields:  # Settings itself would ignore it
                close = difflib.get_close_matches(name, Settings.model_fields, n=1)
                hint = f": did you mean {close[0]!r}?" if close else ""
                raise TypeError(
                    f"Harness() got an unexpected keyword argument {name!r} (settings go by"
                    f" their names in portabot.settings.Settings{hint})"
                )
        self.now = start
        """What the flow sees as `ctx.now` and storage stamps rows with."""
        self._flow = flow
        self._settings = {**CHANNELS, **settings}
        self._ids = itertools.count(1)
        self._folder: Path | None = None
        self._runner: asyncio.Runner | None = None
        self._bot: Bot | None = None

    def __enter__(self) -> Self:
        self._folder = Path(tempfile.mkdtemp(prefix="portabot-harness-"))
        try:
            url = f"sqlite:///{self._folder / 'bot.db'}"
            settings = Settings(**self._settings, database_url=url)
            self._bot = Bot(settings, self._flow)
            self._bot.flow.configure(settings)  # a flow given, as one BOT_FLOW names is
            upgrade(url, feature_tables(self._bot.flow.features))  # as `portabot migrate` does
            self._bot.clock = lambda: self.now
            self._runner = asyncio.Runner()
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._runner is not None:
                self._runner.run(self.bot.close())
                self._runner.close()
        finally:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
            self._runner = self._bot = self._folder = None

    @property
    def bot(self) -> Bot:
        """The services the pipeline runs with (settings, database, flow, channels)."""
        if self._bot is None:
            raise RuntimeError("use the Harness in a `with` block")
        return self._bot

    def person(self, platform: str, user_id: int | str | None = None) -> Speaker:
        """Someone's account on a platform (telegram, vk, web): `user_id` names it (the same one
        twice is the same account), or a new one is made."""
        if platform not in self.bot.channels:
            raise ValueError(f"no {platform!r} channel; the bot has {sorted(self.bot.channels)}")
        user = str(user_id) if user_id is not None else f"{platform}-{next(self._ids)}"
        return Speaker(self, Account(platform, user, user))

    def advance(self, seconds: float) -> Replies:
        """Move the clock forward, then `tick`: the replies of what came due."""
        if seconds < 0:
            raise ValueError(f"time moves forward only (got {seconds})")
        self.now += seconds
        return self.tick()

    def tick(self) -> Replies:
        """Run what is due at the harness's clock, as `portabot tick` does: timers fire, replies
        sent later go, outside calls are made (the flow's services, called for real) and their
        results stepped. The replies of all of it, in order; a web visitor's are in the list
        too (they wait in the inbox)."""

        async def step(channel: Channel, update: Update) -> Outcome:
            return await process(self.bot, channel, update)

        done = self.run(run_jobs(self.bot, step))
        replies: list[Delivery] = []
        told: list[Delivery] = []
        for outcome in done.outcomes:
            self._sent(outcome.later)
            keys = {d.key for d in outcome.told}
            replies.extend(d for d in (*outcome.later, *outcome.kept) if d.key not in keys)
            told.extend(outcome.told)
        return Replies(replies, told)

    def _sent(self, deliveries: Iterable[Delivery]) -> None:
        """Mark stored replies sent: nothing in a harness reaches the platforms."""
        for stored in deliveries:
            assert stored.outbox_id is not None
            self.run(mark_sent(self.bot.db, stored.outbox_id, self.now))

    def message(self, account: Account, text: str) -> Message:
        """A private message as the account's channel parses it."""
        bot_username = self.bot.settings.telegram_bot_username
        command = parse_command(text, bot_username if account.platform == "telegram" else None)
        if command is None:
            return Message(account, Kind.TEXT, text, at=self.now)
        return Message(account, Kind.COMMAND, text, *command, at=self.now)

    def deliver(self, update: Update) -> Replies:
        """Process one update as the server does; the texts of the replies, in order, whether the
        response carries them or the outbox does (marked sent: nothing is left to send)."""
        outcome = self.run(_process(self.bot, update))
        self._sent(outcome.later)
        told = {d.key for d in outcome.told}
        replies = [d for d in (*outcome.inline, *outcome.later) if d.key not in told]
        return Replies(sorted(replies, key=_position), outcome.told)

    def update_id(self) -> str:
        """A new update id: each message is a fresh delivery."""
        return str(next(self._ids))

    def stored(self, account: Account) -> Person | None:
        """The person the database has for an account (None before their first message)."""
        return self.run(self._find(account))

    async def _find(self, account: Account) -> Person | None:
        async with self.bot.db.transaction() as conn:
            return await person_of(conn, account)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the harness's event loop (say, to read a feature's own tables
        through `bot.db`)."""
        if self._runner is None:
            raise RuntimeError("use the Harness in a `with` block")
        return self._runner.run(coroutine)


def _position(delivery: Delivery) -> int:
    """Where a reply stands among its update's (its key is `update_id:position`)."""
    return int(delivery.key.rpartition(":")[2] or 0)


class Replies(list[str]):
    """The texts of an update's replies, in order (a list: `== ["Hi!"]`), and what rode with
    them: `.replies` the whole replies (buttons, formatting, image, edit), `.notice` the answer
    to a press, `.buttons` every button's label and payload (or URL), row by row, flattened;
    `.told` the messages to a person (`ctx.tell`) the update stored, as (platform, user id,
    text), in the order told (Telegram and VK marked sent, the web ones left in the inbox)."""

    def __init__(self, deliveries: Iterable[Delivery], told: Iterable[Delivery] = ()) -> None:
        sent = [d for d in deliveries if d.answer is None]
        answers = [d for d in deliveries if d.answer is not None]
        super().__init__(d.text for d in sent)
        self.replies: list[Reply] = [d.content for d in sent]
        self.notice: str | None = answers[0].text or None if answers else None
        self.edited: list[bool] = [d.edit_id is not None for d in sent]
        """For each reply, whether it replaced the pressed message."""
        self.told: list[tuple[str, str, str]] = [(d.platform, d.chat_id, d.text) for d in told]

    @property
    def buttons(self) -> list[Button]:
        return [b for reply in self.replies for row in reply.buttons for b in row]


class Speaker:
    """One account talking to the bot in a harness: what it says goes through the pipeline."""

    def __init__(self, harness: Harness, account: Account) -> None:
        self.harness = harness
        self.account = account
        self._last: Update | None = None

    def say(self, text: str) -> Replies:
        """Send a message (a fresh update); the replies' texts, in order."""
        return self._deliver(self.harness.message(self.account, text))

    def send(
        self, kind: Kind, text: str = "", *, attachments: Iterable[Attachment] = ()
    ) -> Replies:
        """Send something of a kind other than text (Kind.PHOTO with its `attachments`, `text`
        the caption; Kind.JOINED, Kind.LEFT); a fresh update, as `say`."""
        if kind in (Kind.TEXT, Kind.COMMAND, Kind.PRESS):
            raise ValueError(f"send({kind}): use say() for text and commands, press() for presses")
        sent = tuple(attachments)
        for attachment in sent:
            if not isinstance(attachment, Attachment):
                raise TypeError(f"attachments are Attachment(...), not {type(attachment).__name__}")
        message = Message(self.account, kind, text, at=self.harness.now, attachments=sent)
        return self._deliver(message)

    def press(self, payload: str, *, message_id: str | None = "1") -> Replies:
        """Press a button with `payload` (any string, as a client may send; it need not be one
        the bot offered) on the message `message_id` (None: a press with no message to edit,
        as VK's text buttons make)."""
        account = self.account
        message = Message(
            account,
            Kind.PRESS,
            payload=payload,
            at=self.harness.now,
            press=Press(f"press-{self.harness.update_id()}", message_id),
        )
        return self._deliver(message)

    def event(
        self, name: str, data: dict[str, Any] | None = None, *, id: str | None = None
    ) -> Replies:
        """An event from outside for this account's person, as `POST /api/events` delivers it
        (`id`: the caller's id; a fresh one by default, the same one twice is acknowledged
        once). Its replies are messages to the person: in `.told`, not in the list."""
        if not EVENT_NAME.fullmatch(name):
            raise ValueError(f"event name {name!r}: 1 to 64 of a-z, 0-9, '_', '.', '-'")
        message = Message(
            self.account, Kind.EVENT, at=self.harness.now, event=name, data=dict(data or {})
        )
        self._last = Update(EVENTS.platform, id or self.harness.update_id(), message)
        return self.harness.deliver(self._last)

    def _deliver(self, message: Message) -> Replies:
        self._last = Update(self.account.platform, self.harness.update_id(), message)
        return self.harness.deliver(self._last)

    def redeliver(self) -> Replies:
        """The platform delivers the last message again (same update id): processed once, it
        answers only what the pipeline answers a duplicate."""
        if self._last is None:
            raise RuntimeError("nothing was said yet to deliver again")
        return self.harness.deliver(self._last)

    @property
    def conversation(self) -> Conversation:
        """The person's stored state (`.state`, `.data`), read from the database."""
        person = self.harness.stored(self.account)
        return Conversation() if person is None else person.conversation

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms of the person's linked accounts, sorted."""
        person = self.harness.stored(self.account)
        return () if person is None else person.platforms
