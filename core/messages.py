"""Platform-neutral incoming messages, outgoing replies and a person's place in the flow: the
values channels, storage and the flow pass between them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from portabot.replies import Reply

__all__ = [
    "UNSENT_KINDS",
    "Account",
    "Attachment",
    "ChatMoved",
    "Conversation",
    "Delivery",
    "Kind",
    "Message",
    "Outcome",
    "Press",
    "Reply",
    "Update",
    "parse_command",
]


class Kind(enum.Enum):
    TEXT = "text"
    """Text (or something sent that has no kind of its own, such as a poll: `text` empty)."""
    COMMAND = "command"
    """`/name args`; `command` holds the name in lower case, `args` the rest."""
    JOINED = "joined"
    """The sender joined a chat the bot is in (or added people to it)."""
    LEFT = "left"
    """The sender left a chat the bot is in."""
    PRESS = "press"
    """A button of ours was pressed: `payload` holds its payload (untrusted: a client can send
    any), `press` what the platform needs to answer it and to edit the pressed message."""
    PHOTO = "photo"
    VIDEO = "video"
    DOCUMENT = "document"
    AUDIO = "audio"
    VOICE = "voice"
    STICKER = "sticker"
    LOCATION = "location"
    """Attachments: `attachments` holds what was sent (the first decides the kind) and `text`
    the caption, if any."""
    EVENT = "event"
    """An event from outside (`POST /api/events`): `event` holds its name, `data` its data
    (untrusted: check it as typed text). The account is one of the person's; the flow's replies
    go to the person on every linked platform, as `ctx.tell` does."""
    TIMER = "timer"
    """A timer the flow set (`ctx.wake`) is due: `event` holds its name, `data` the data it was
    set with. The account is the one whose step set it: replies go to that chat."""
    RETURNED = "returned"
    """An outside call (`ctx.call`) came back: `event` holds the service's name, `result` what
    it returned. Replies go to the chat of the step that asked."""
    FAILED = "failed"
    """An outside call failed every attempt: `event` holds the service's name, `error` why."""


UNSENT_KINDS = frozenset({Kind.EVENT, Kind.TIMER, Kind.RETURNED, Kind.FAILED})
"""Kinds nobody sent in a chat (an event, a timer, a call's result): named (`event`), routed by
name, and no sign of the person being there."""

ATTACHMENT_KINDS = frozenset(
    {Kind.PHOTO, Kind.VIDEO, Kind.DOCUMENT, Kind.AUDIO, Kind.VOICE, Kind.STICKER, Kind.LOCATION}
)


@dataclass(frozen=True, slots=True)
class Account:
    """One platform account: who wrote, and the chat where replies go."""

    platform: str
    user_id: str
    chat_id: str
    name: str | None = None
    thread_id: str | None = None
    """The forum topic the message was posted in (Telegram's message_thread_id): replies go there
    too. None outside topics."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """Something a person sent: what a flow needs to refer to it again."""

    kind: Kind
    file_id: str = ""
    """The platform's reference to the file (Telegram's file_id; VK's `photo<owner>_<id>_<key>`
    as messages.send takes it); empty for a location."""
    url: str | None = None
    """Where to fetch it, when the platform says (VK's photos and documents)."""
    name: str | None = None
    """A document's file name."""
    mime_type: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class Press:
    """What a channel needs to answer a press and to edit the pressed message; both are the
    channel's own strings (the flow has no use for them)."""

    answer: str = ""
    """The press's id to answer (Telegram's callback query, VK's event); empty: nothing to
    answer (a VK client without callback buttons sent the payload as a message)."""
    message_id: str | None = None
    """The pressed message, to edit; None: an edit is sent as a new message."""


@dataclass(frozen=True, slots=True)
class Message:
    account: Account
    kind: Kind
    text: str = ""
    command: str | None = None
    args: str = ""
    at: float = 0.0
    """When the platform says it was sent (Unix seconds)."""
    edited: bool = False
    payload: str = ""
    """A press's payload (Kind.PRESS)."""
    press: Press | None = None
    attachments: tuple[Attachment, ...] = ()
    keyboard: str | None = None
    """What the sender's client can show of buttons, where the platform says (VK's
    client_info), in the channel's own words; the replies to it carry this along."""
    event: str = ""
    """An event's name (Kind.EVENT), a timer's (Kind.TIMER), a service's (Kind.RETURNED and
    Kind.FAILED)."""
    data: dict[str, Any] = field(default_factory=dict, hash=False)
    """An event's data (Kind.EVENT), a timer's (Kind.TIMER): a JSON object; for a call,
    `{"result": ...}` or `{"error": "..."}` (read them as `result` and `error`)."""

    @property
    def platform(self) -> str:
        return self.account.platform

    @property
    def result(self) -> Any:
        """What the service returned (Kind.RETURNED): any JSON value."""
        return self.data.get("result")

    @property
    def error(self) -> str:
        """Why the call failed (Kind.FAILED), as the last attempt's exception says."""
        return str(self.data.get("error", ""))


@dataclass(frozen=True, slots=True)
class Update:
    """What a channel parsed from one delivery: the platform's id for it and the message, if any."""

    platform: str
    update_id: str
    message: Message | None
    over_https: bool = False
    """The delivery reached us over HTTPS (directly, or through a proxy we trust)."""
    sequence: int | None = None
    """Where the platform puts it among its updates (Telegram's update_id), when it numbers them."""
    chat_moved: ChatMoved | None = None
    """The platform gave a chat a new id: what is stored for sending there moves with it."""


@dataclass(frozen=True, slots=True)
class ChatMoved:
    """A chat that lives on under a new id (a Telegram group upgraded to a supergroup)."""

    old_chat_id: str
    new_chat_id: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """One person's place in the flow: the state's name (None before the first message) and data."""

    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A reply addressed to a chat; `outbox_id` is set once it is stored for sending later."""

    platform: str
    chat_id: str
    text: str
    key: str = ""
    """The same for every attempt at this reply (update id and position): VK drops repeats by it."""
    outbox_id: int | None = None
    thread_id: str | None = None
    """The forum topic within the chat (see Account.thread_id)."""
    reply: Reply | None = None
    """The whole reply (None: `text` alone); `text` is its plain text."""
    edit_id: str | None = None
    """The message this one replaces (the channel's Press.message_id)."""
    answer: str | None = None
    """This delivery answers a press (the channel's Press.answer), `text` its notice."""
    keyboard: str | None = None
    """Message.keyboard of the message replied to."""

    @property
    def content(self) -> Reply:
        return self.reply if self.reply is not None else Reply(self.text)

    def extra(self) -> dict[str, Any] | None:
        """What the outbox keeps beside the text (None: nothing, a plain reply)."""
        found: dict[str, Any] = {}
        if self.reply is not None and not self.reply.plain_only:
            found["reply"] = self.reply.to_json()
        if self.edit_id is not None:
            found["edit_id"] = self.edit_id
        if self.answer is not None:
            found["answer"] = self.answer
        if self.keyboard is not None:
            found["keyboard"] = self.keyboard
        return found or None

    def with_extra(self, found: dict[str, Any] | None) -> Delivery:
        if not found:
            return self
        reply = found.get("reply")
        return replace(
            self,
            reply=Reply.from_json(reply) if reply is not None else None,
            edit_id=found.get("edit_id"),
            answer=found.get("answer"),
            keyboard=found.get("keyboard"),
        )


@dataclass(slots=True)
class Outcome:
    """What processing one update produced."""

    duplicate: bool = False
    inline: list[Delivery] = field(default_factory=list)
    """Replies the webhook response carries."""
    later: list[Delivery] = field(default_factory=list)
    """Replies stored in the outbox, to send through the platform's API (messages to a person
    among them, after the replies)."""
    kept: list[Delivery] = field(default_factory=list)
    """Replies kept in a web visitor's inbox (no response of theirs carries them: a timer's)."""
    told: list[Delivery] = field(default_factory=list)
    """Messages to a person the update stored (`ctx.tell`): those in `later`, and those kept in
    the web inbox."""
    given_up: bool = False
    """The flow failed on the update too often: it is acknowledged, the replies say so."""
    calls: int = 0
    """Outside calls the update stored (`ctx.call`), to run once it has committed."""


def parse_command(text: str, bot_username: str | None = None) -> tuple[str, str] | None:
    """`/Cmd@Bot args` -> ("cmd", "args"); None when not a command or addressed to another bot."""
    if len(text) < 2 or text[0] != "/" or text[1].isspace():
        return None
    head, *rest = text[1:].split(maxsplit=1)
    name, _, target = head.partition("@")
    if not name:
        return None
    if target and bot_username and target.lower() != bot_username.lower():
        return None
    return name.lower(), rest[0].strip() if rest else ""
