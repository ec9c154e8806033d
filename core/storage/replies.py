"""Replies that rode in a webhook response, kept so that a late re-delivery of their update can
carry them again: the platform delivers an update again only when our answer never reached it
(say, the worker was killed between its commit and its response)."""

from __future__ import annotations

import json
from typing import Any

from portabot.messages import Delivery, Update
from portabot.replies import dumps
from portabot.storage.database import Conn, Query

REMEMBER = (
    "INSERT INTO inline_replies (platform, update_id, replies, replied_at)"
    " VALUES (:platform, :update_id, :replies, :now)"
)
"""The statement that keeps an update's inline replies (also a part of `people.save_person`'s)."""
_REMEMBER = Query(REMEMBER)
_TAKE = Query(
    "DELETE FROM inline_replies WHERE platform = :platform AND update_id = :update_id"
    " AND replied_at < :before RETURNING replies"
)

_FORGET = Query("DELETE FROM inline_replies WHERE platform = :platform AND update_id = :update_id")


def _kept(reply: Delivery) -> list[Any]:
    kept: list[Any] = [reply.chat_id, reply.text, reply.key]
    extra = reply.extra()
    if extra is not None:
        return [*kept, reply.thread_id, extra]
    return kept if reply.thread_id is None else [*kept, reply.thread_id]


def kept_json(replies: list[Delivery]) -> str:
    """Inline replies as `inline_replies.replies` keeps them."""
    return dumps([_kept(r) for r in replies])


async def remember_replies(conn: Conn, update: Update, replies: list[Delivery], now: float) -> None:
    """Keep the replies that ride in the update's response, for a late re-delivery."""
    await conn.execute(
        _REMEMBER,
        platform=update.platform,
        update_id=update.update_id,
        replies=kept_json(replies),
        now=now,
    )


async def take_replies(conn: Conn, update: Update, before: float) -> list[Delivery]:
    """The update's replies if they were kept before `before` (an earlier answer had time to
    arrive), taken so that no other copy sends them too."""
    kept = await conn.fetch_val(
        _TAKE, platform=update.platform, update_id=update.update_id, before=before
    )
    return [] if kept is None else _deliveries(update, kept)


def _deliveries(update: Update, kept: str) -> list[Delivery]:
    return [
        Delivery(update.platform, chat, text, key, thread_id=rest[0] if rest else None).with_extra(
            rest[1] if len(rest) > 1 else None
        )
        for chat, text, key, *rest in json.loads(kept)
    ]


async def forget_replies(conn: Conn, update: Update) -> None:
    """The replies went another way (through the API): no re-delivery may send them again."""
    await conn.execute(_FORGET, platform=update.platform, update_id=update.update_id)
