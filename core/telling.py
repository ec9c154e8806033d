"""Messages to a person rather than to the chat that wrote: to every platform they linked (or the
ones named). Telegram and VK go to the person's private chat (for both, the chat id of a private
chat is the user id; `accounts.chat_id` may be a group the account was first seen in), the web
chat to the visitor's inbox. Stored in the caller's transaction: Telegram and VK in the outbox,
sent after the commit; the web in the inbox, collected by the visitor's page.

A flow asks with `ctx.tell(...)` (the `Tell` effect, a core effect: the pipeline carries it out
itself, since every flow has it); the operator with `portabot notify`. Storing them:
storage/telling.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portabot.effects import CoreEffect
from portabot.replies import Reply, ReplyError

if TYPE_CHECKING:
    from portabot.effects import Storing

PLATFORMS = ("telegram", "vk", "web")
"""The platforms a message to a person can go to."""


class TellError(LookupError):
    """The person to tell does not exist (a wrong id, or one since merged into another or
    purged)."""


@dataclass(frozen=True, slots=True)
class Tell(CoreEffect):
    """`ctx.tell(...)`: a message to a person (None: the one whose update this is) on every
    platform they linked, or only on `platforms`. Carried out by the pipeline; no result."""

    reply: Reply
    platforms: tuple[str, ...] | None = None
    person: int | None = None

    async def store(self, storing: Storing) -> None:
        from portabot.storage.telling import tell

        person_id = storing.person_id if self.person is None else self.person
        bot = storing.bot
        told = await tell(
            storing.conn,
            person_id,
            self.reply,
            storing.key,
            storing.now,
            bot.channels,
            self.platforms,
        )
        if told.skipped:
            storing.notes.append(
                f"message to person {person_id} not stored for {', '.join(told.skipped)}:"
                " no channel configured"
            )
        storing.told.extend(told)


def check_tell_args(platforms: Sequence[str] | None, person: int | None) -> tuple[str, ...] | None:
    """The platforms as a tuple, raising ReplyError for a name that is not a platform or a
    person id that is not an int (checked in the flow's step, so that its own test sees it)."""
    if person is not None and (type(person) is not int or person < 1):
        raise ReplyError(f"person is a person's id (an int, 1 or more), not {person!r}")
    if platforms is None:
        return None
    if isinstance(platforms, str):
        raise ReplyError(f"platforms is a list of names, e.g. [{platforms!r}], not a str")
    named = tuple(platforms)
    for name in named:
        if name not in PLATFORMS:
            raise ReplyError(f"platforms: {name!r} is not one of {', '.join(PLATFORMS)}")
    if not named:
        raise ReplyError("platforms is empty: name at least one, or leave it out for every one")
    return named
