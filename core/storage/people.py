"""People and their platform accounts: find or create, lock, save, merge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from databases.core import Connection
from databases.interfaces import Record

from core.conversation.engine import Conversation
from core.messages import Account
from core.storage.database import Database, Prepared
from core.storage.tables import accounts, link_codes, people
from core.storage.updates import RECORD_UPDATE


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


def _person_of_row(row: Sequence[Any]) -> Person:
    person_id, state, data, platforms = row
    return Person(
        id=person_id,
        conversation=Conversation(state, json.loads(data)),
        platforms=tuple(sorted(set((platforms or "").split(",")) - {""})),
    )


# One round trip on PostgreSQL: record the update id and, if it is new, lock its sender's person.
# The person is locked only after the update id is in (a concurrent twin waits on the id first).
_ADMIT = Prepared(
    postgresql=sa.text(
        """
        WITH seen AS (
            INSERT INTO updates (platform, update_id, received_at)
            VALUES (:platform, :update_id, :now)
            ON CONFLICT DO NOTHING
            RETURNING 1
        ), me AS (
            SELECT people.id, people.state, people.data FROM people
            WHERE people.id = (
                SELECT person_id FROM accounts WHERE platform = :platform AND user_id = :user_id
            ) AND EXISTS (SELECT 1 FROM seen)
            FOR UPDATE
        )
        SELECT EXISTS (SELECT 1 FROM seen), me.id, me.state, me.data,
            (SELECT string_agg(platform, ',') FROM accounts WHERE person_id = me.id)
        FROM (SELECT 1) AS one LEFT JOIN me ON true
        """
    ),
)
_PERSON_OF = Prepared(
    sa.text(
        """
        SELECT people.id, people.state, people.data,
            (SELECT group_concat(platform, ',') FROM accounts WHERE person_id = people.id)
        FROM people
        WHERE people.id = (
            SELECT person_id FROM accounts WHERE platform = :platform AND user_id = :user_id
        )
        """
    )
)
_SAVE = Prepared(
    sa.text("UPDATE people SET state = :state, data = :data, updated_at = :now WHERE id = :id")
)


async def admit(
    conn: Connection, db: Database, update_id: str, account: Account, now: float
) -> tuple[bool, Person | None]:
    """Record the update id; when it is new, also lock its sender's person. Returns whether it was
    new and the person (None for someone not seen before: `lock_person_of` creates them)."""
    params = {"platform": account.platform, "update_id": update_id, "now": now}
    if db.dialect == "sqlite":  # one writer at a time already: nothing to lock
        if await db.fetch_row(conn, RECORD_UPDATE, **params) is None:
            return False, None
        row = await db.fetch_row(conn, _PERSON_OF, user_id=account.user_id, **params)
        return True, None if row is None else _person_of_row(row)
    row = await db.fetch_row(conn, _ADMIT, user_id=account.user_id, **params)
    assert row is not None  # the outer join always gives one row
    fresh, *person = row
    return fresh, None if person[0] is None else _person_of_row(person)


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
    conn: Connection, db: Database, person_id: int, conversation: Conversation, now: float
) -> None:
    data = json.dumps(conversation.data, ensure_ascii=False, separators=(",", ":"))
    await db.run(conn, _SAVE, state=conversation.state, data=data, now=now, id=person_id)


async def absorb(conn: Connection, kept: int, absorbed: int) -> None:
    """Move every account of `absorbed` to `kept` and delete `absorbed` (both locked by us)."""
    await conn.execute(
        accounts.update().where(accounts.c.person_id == absorbed).values(person_id=kept)
    )
    await conn.execute(link_codes.delete().where(link_codes.c.person_id == absorbed))
    await conn.execute(people.delete().where(people.c.id == absorbed))
