"""Storing a message to a person (core/telling.py says where each platform's goes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portabot.messages import Delivery
from portabot.replies import Reply, split
from portabot.storage.database import Conn, Query
from portabot.storage.inbox import add_to_inbox
from portabot.storage.outbox import add_to_outbox
from portabot.telling import TellError

if TYPE_CHECKING:
    from portabot.channels.base import Channel

_ACCOUNTS = Query(
    "SELECT platform, user_id FROM accounts WHERE person_id = :person_id ORDER BY platform, user_id"
)
_EXISTS = Query("SELECT id FROM people WHERE id = :person_id")
_OWNER = Query("SELECT person_id FROM accounts WHERE platform = :platform AND user_id = :user_id")


@dataclass(slots=True)
class Told:
    """What one message to a person stored."""

    sent: list[Delivery] = field(default_factory=list)
    """Telegram and VK deliveries, in the outbox (with their ids), to send after the commit."""
    kept: list[Delivery] = field(default_factory=list)
    """Web deliveries kept in the inbox for the visitor's page."""
    skipped: list[str] = field(default_factory=list)
    """Platforms the person has accounts on that this deployment has no channel for (nothing
    stored)."""

    every: list[Delivery] = field(default_factory=list)
    """Both, in the order told."""

    def extend(self, other: Told) -> None:
        self.every.extend(other.every)
        self.sent.extend(other.sent)
        self.kept.extend(other.kept)
        self.skipped.extend(p for p in other.skipped if p not in self.skipped)


async def person_of_account(conn: Conn, platform: str, user_id: str) -> int | None:
    """The id of the person who owns the account; None for an account never seen."""
    found: int | None = await conn.fetch_val(_OWNER, platform=platform, user_id=user_id)
    return found


async def tell(
    conn: Conn,
    person_id: int,
    reply: Reply,
    key: str,
    now: float,
    channels: Mapping[str, Channel],
    platforms: Sequence[str] | None = None,
    *,
    leased: bool = True,
) -> Told:
    """Store `reply` for each of the person's accounts (on `platforms`, or all), cut to each
    channel's length. Keys start with `key`, so the same key always makes the same deliveries
    (the inbox keeps one key once; VK drops a repeated random_id). Raises TellError when the
    person does not exist; a person with no account on the named platforms gets nothing. The
    outbox's deliveries are leased to the caller, to send next, unless not `leased`."""
    rows = await conn.fetch_all(_ACCOUNTS, person_id=person_id)
    if not rows and await conn.fetch_val(_EXISTS, person_id=person_id) is None:
        raise TellError(f"no person {person_id} to tell (a wrong id, or merged or purged since)")
    told = Told()
    outgoing: list[Delivery] = []
    seen: dict[str, int] = {}
    for row in rows:
        platform, user_id = row["platform"], row["user_id"]
        if platforms is not None and platform not in platforms:
            continue
        channel = channels.get(platform)
        if platform != "web" and channel is None:
            if platform not in told.skipped:
                told.skipped.append(platform)
            continue
        account = seen[platform] = seen.get(platform, -1) + 1  # a second account of a platform
        max_text = channel.max_text if channel is not None else None
        max_caption = channel.max_caption if channel is not None else None
        pieces = split(reply, max_text, max_caption)
        for position, piece in enumerate(pieces):
            suffix = "" if account == 0 and position == 0 else f":{account}.{position}"
            whole = None if piece.plain_only else piece
            delivery = Delivery(
                platform, user_id, piece.text, f"{key}:{platform}{suffix}", None, None, whole
            )
            (told.kept if platform == "web" else outgoing).append(delivery)
            told.every.append(delivery)
    await add_to_inbox(conn, told.kept, now)
    told.sent = await add_to_outbox(conn, outgoing, now, leased=leased)
    ids = {d.key: d for d in told.sent}
    told.every = [ids.get(d.key, d) for d in told.every]
    return told
