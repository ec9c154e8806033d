"""People and their platform accounts: find or create, lock, save, merge."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from databases.core import Connection
from databases.interfaces import Record

from core.conversation.engine import Conversation
from core.messages import Account
from core.storage.database import Database
from core.storage.tables import accounts, link_codes, people


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    conversation: Conversation
    platforms: tuple[str, ...]


_PLATFORMS = (
    sa.select(sa.func.aggregate_strings(accounts.c.platform, ","))
    .where(accounts.c.person_id == people.c.id)
    .scalar_subquery()
    .label("platforms")
)
_PERSON = sa.select(people.c.id, people.c.state, people.c.data, _PLATFORMS)


def _person(row: Record) -> Person:
    fields = row._mapping
    return Person(
        id=fields["id"],
        conversation=Conversation(fields["state"], json.loads(fields["data"])),
        platforms=tuple(sorted(set((fields["platforms"] or "").split(",")) - {""})),
    )


async def lock_person(conn: Connection, person_id: int) -> Person | None:
    row = await conn.fetch_one(_PERSON.where(people.c.id == person_id).with_for_update(of=people))
    return None if row is None else _person(row)


async def lock_person_of(conn: Connection, db: Database, account: Account, now: float) -> Person:
    """The person who owns `account`, locked for this transaction; created on first contact."""
    owner = (
        sa.select(accounts.c.person_id)
        .where(accounts.c.platform == account.platform, accounts.c.user_id == account.user_id)
        .scalar_subquery()
    )
    query = _PERSON.where(people.c.id == owner).with_for_update(of=people)
    for _ in range(5):  # a concurrent merge or first contact can move the account under us
        row = await conn.fetch_one(query)
        if row is not None:
            return _person(row)
        person_id = await conn.fetch_val(
            people.insert()
            .values(state=None, data="{}", created_at=now, updated_at=now)
            .returning(people.c.id)
        )
        claimed = await conn.fetch_val(
            db.insert(accounts)
            .values(
                platform=account.platform,
                user_id=account.user_id,
                person_id=person_id,
                chat_id=account.chat_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(accounts.c.person_id)
        )
        if claimed is not None:
            return Person(person_id, Conversation(), (account.platform,))
        await conn.execute(people.delete().where(people.c.id == person_id))
    raise RuntimeError("could not settle the owner of an account")


async def save_conversation(
    conn: Connection, person_id: int, conversation: Conversation, now: float
) -> None:
    await conn.execute(
        people.update()
        .where(people.c.id == person_id)
        .values(
            state=conversation.state,
            data=json.dumps(conversation.data, ensure_ascii=False, separators=(",", ":")),
            updated_at=now,
        )
    )


async def absorb(conn: Connection, kept: int, absorbed: int) -> None:
    """Move every account of `absorbed` to `kept` and delete `absorbed` (both locked by us)."""
    await conn.execute(
        accounts.update().where(accounts.c.person_id == absorbed).values(person_id=kept)
    )
    await conn.execute(link_codes.delete().where(link_codes.c.person_id == absorbed))
    await conn.execute(people.delete().where(people.c.id == absorbed))
