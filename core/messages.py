"""Platform-neutral incoming messages, outgoing replies and a person's place in the flow: the
values channels, storage and the flow pass between them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Kind(enum.Enum):
    TEXT = "text"
    """Plain text (also a message without text, such as a photo: then `text` is empty)."""
    COMMAND = "command"
    """`/name args`; `command` holds the name in lower case, `args` the rest."""
    JOINED = "joined"
    """The sender joined a chat the bot is in (or added people to it)."""
    LEFT = "left"
    """The sender left a chat the bot is in."""


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
class Message:
    account: Account
    kind: Kind
    text: str = ""
    command: str | None = None
    args: str = ""
    at: float = 0.0
    """When the platform says it was sent (Unix seconds)."""
    edited: bool = False

    @property
    def platform(self) -> str:
        return self.account.platform


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
class Reply:
    text: str


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


@dataclass(slots=True)
class Outcome:
    """What processing one update produced."""

    duplicate: bool = False
    inline: list[Delivery] = field(default_factory=list)
    """Replies the webhook response carries."""
    later: list[Delivery] = field(default_factory=list)
    """Replies stored in the outbox, to send through the platform's API."""
    given_up: bool = False
    """The flow failed on the update too often: it is acknowledged, the replies say so."""


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
