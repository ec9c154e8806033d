"""People and their platform accounts: find or create, lock, save, merge."""

from __future__ import annotations

import json
from dataclasses import dataclass

from portabot.messages import Account, Conversation, Delivery, Update
from portabot.replies import dumps
from portabot.storage.database import Conn, Query, Row
from portabot.storage.replies import REMEMBER, kept_json, remember_replies
from portabot.storage.updates import RECORD_UPDATE, SEEN


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    conversation: Conversation
    platforms: tuple[str, ...]
    updated_at: float = 0.0
    """When the state was last written (at least daily while the person writes: webhooks.py)."""
    version: int = 0
    """Raised by every write of the state or of the accounts: what a remembered copy is
    checked against (`save_step`)."""


def _person(row: Row) -> Person:
    return Person(
        id=row["id"],
        conversation=Conversation(row["state"], json.loads(row["data"])),
        platforms=tuple(sorted(set((row["platforms"] or "").split(",")) - {""})),
        updated_at=row["updated_at"],
        version=row["version"],
    )


_COLUMNS = """people.id, people.state, people.data, people.updated_at, people.version, (
    SELECT {aggregate}(platform, ',') FROM accounts WHERE person_id = people.id
) AS platforms"""
_PG_COLUMNS = _COLUMNS.format(aggregate="string_agg")
_SQLITE_COLUMNS = _COLUMNS.format(aggregate="group_concat")
_OWNER = "SELECT person_id FROM accounts WHERE platform = :platform AND user_id = :user_id"

# One round trip on PostgreSQL: record the update id and, if it is new, lock its sender's person.
# The person is locked only after the update id is in (a concurrent twin waits on the id first).
_ADMIT = Query(
    postgresql=f"""
    WITH {SEEN}, me AS (
        SELECT id, state, data, updated_at, version FROM people
        WHERE id = ({_OWNER}) AND EXISTS (SELECT 1 FROM seen)
        FOR UPDATE
    )
    SELECT EXISTS (SELECT 1 FROM seen) AS fresh, me.id, me.state, me.data, me.updated_at,
        me.version, (
        SELECT string_agg(platform, ',') FROM accounts WHERE person_id = me.id
    ) AS platforms
    FROM (SELECT 1) AS one LEFT JOIN me ON true
    """
)
_LOCK_OWNER = Query(
    postgresql=f"SELECT {_PG_COLUMNS} FROM people WHERE people.id = ({_OWNER}) FOR UPDATE",
    sqlite=f"SELECT {_SQLITE_COLUMNS} FROM people WHERE people.id = ({_OWNER})",
)
_LOCK = Query(
    postgresql=f"SELECT {_PG_COLUMNS} FROM people WHERE people.id = :id FOR UPDATE",
    sqlite=f"SELECT {_SQLITE_COLUMNS} FROM people WHERE people.id = :id",
)
_CREATE = Query(
    "INSERT INTO people (state, data, created_at, updated_at)"
    " VALUES (NULL, '{{}}', :now, :now) RETURNING id"
)
_CLAIM = Query(
    "INSERT INTO accounts (platform, user_id, person_id, chat_id, created_at)"
    " VALUES (:platform, :user_id, :person_id, :chat_id, :now)"
    " ON CONFLICT DO NOTHING RETURNING person_id"
)
_DELETE = Query("DELETE FROM people WHERE id = :id")
_SAVE_TEXT = (
    "UPDATE people SET state = :state, data = :data, updated_at = :now, version = version + 1"
    " WHERE id = :id"
)
_SAVE = Query(_SAVE_TEXT)
_SAVE_KEEPING = Query(postgresql=f"WITH kept AS ({REMEMBER}) {_SAVE_TEXT}")
"""The save with the update's inline replies kept, one round trip (SQLite takes the two)."""
_BUMP = Query("UPDATE people SET version = version + 1 WHERE id = :id")
_MOVE_ACCOUNTS = Query("UPDATE accounts SET person_id = :kept WHERE person_id = :absorbed")
_MOVE_CHAT = Query(
    "UPDATE accounts SET chat_id = :new_chat_id"
    " WHERE platform = :platform AND chat_id = :old_chat_id"
)


async def admit(
    conn: Conn, update_id: str, account: Account, now: float
) -> tuple[bool, Person | None]:
    """Record the update id; when it is new, also lock its sender's person. Returns whether it was
    new and the person (None for someone not seen before: `lock_person_of` creates them)."""
    params = {"platform": account.platform, "update_id": update_id, "now": now}
    if conn.dialect == "sqlite":  # one writer at a time already: nothing to lock
        if await conn.fetch_one(RECORD_UPDATE, **params) is None:
            return False, None
        row = await conn.fetch_one(_LOCK_OWNER, user_id=account.user_id, **params)
        return True, None if row is None else _person(row)
    row = await conn.fetch_one(_ADMIT, user_id=account.user_id, **params)
    assert row is not None  # the outer join always gives one row
    return row["fresh"], None if row["id"] is None else _person(row)


async def lock_person(conn: Conn, person_id: int) -> Person | None:
    row = await conn.fetch_one(_LOCK, id=person_id)
    return None if row is None else _person(row)


_READ_OWNER = Query(postgresql=f"SELECT {_PG_COLUMNS} FROM people WHERE people.id = ({_OWNER})")


async def read_person_of(conn: Conn, account: Account) -> Person | None:
    """The person who owns `account`, read without a lock (PostgreSQL): for a step that
    `save_step` will save only if the person has not changed meanwhile."""
    row = await conn.fetch_one(_READ_OWNER, platform=account.platform, user_id=account.user_id)
    return None if row is None else _person(row)


async def person_of(conn: Conn, account: Account) -> Person | None:
    """The person who owns `account`, locked for this transaction; None before first contact."""
    row = await conn.fetch_one(_LOCK_OWNER, platform=account.platform, user_id=account.user_id)
    return None if row is None else _person(row)


async def lock_person_of(
    conn: Conn, account: Account, now: float, *, found_none: bool = False
) -> Person:
    """The person who owns `account`, locked for this transaction; created on first contact
    (straight away when the caller has just `found_none`)."""
    owner = {"platform": account.platform, "user_id": account.user_id}
    for _ in range(5):  # a concurrent merge or first contact can move the account under us
        if not found_none:
            found = await person_of(conn, account)
            if found is not None:
                return found
        found_none = False
        person_id = await conn.fetch_val(_CREATE, now=now)
        claimed = await conn.fetch_val(
            _CLAIM, person_id=person_id, chat_id=account.chat_id, now=now, **owner
        )
        if claimed is not None:
            return Person(person_id, Conversation(), (account.platform,), now)
        await conn.execute(_DELETE, id=person_id)
    raise RuntimeError("could not settle the owner of an account")


async def save_person(
    conn: Conn,
    person_id: int,
    conversation: Conversation,
    now: float,
    *,
    keeping: tuple[Update, list[Delivery]] | None = None,
) -> None:
    """Write the person's state (locked by us) and count a version; with `keeping`, the inline
    replies of that update kept in the same statement (`remember_replies`)."""
    data = dumps(conversation.data)
    values = {"state": conversation.state, "data": data, "now": now, "id": person_id}
    if keeping is None or not keeping[1]:
        await conn.execute(_SAVE, **values)
    elif conn.dialect == "sqlite":  # no data-modifying CTE there
        await remember_replies(conn, *keeping, now)
        await conn.execute(_SAVE, **values)
    else:
        update, replies = keeping
        await conn.execute(
            _SAVE_KEEPING,
            **values,
            platform=update.platform,
            update_id=update.update_id,
            replies=kept_json(replies),
        )


async def absorb(conn: Conn, kept: int, absorbed: int) -> None:
    """Move every account and job of `absorbed` to `kept` and delete `absorbed` (both locked by
    us; the features have moved or dropped their rows of `absorbed` first)."""
    from portabot.storage.jobs import move_jobs

    await conn.execute(_MOVE_ACCOUNTS, kept=kept, absorbed=absorbed)
    await move_jobs(conn, kept, absorbed)
    await conn.execute(_DELETE, id=absorbed)
    await conn.execute(_BUMP, id=kept)  # its platforms changed: a remembered copy is stale


async def readdress_accounts(conn: Conn, platform: str, old_chat_id: str, new_chat_id: str) -> None:
    """Accounts whose chat now has a new id (a group upgraded to a supergroup) keep it."""
    await conn.execute(
        _MOVE_CHAT, platform=platform, old_chat_id=old_chat_id, new_chat_id=new_chat_id
    )


@dataclass(frozen=True, slots=True)
class PersonAccount:
    platform: str
    user_id: str
    chat_id: str
    since: float


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A person as `portabot show` prints them: their accounts, state and when it was written."""

    id: int
    accounts: tuple[PersonAccount, ...]
    conversation: Conversation
    updated_at: float


_RECORD = Query(f"SELECT id, state, data, updated_at FROM people WHERE id = ({_OWNER})")
_ACCOUNTS = Query(
    "SELECT platform, user_id, chat_id, created_at FROM accounts WHERE person_id = :person_id"
    " ORDER BY created_at, platform, user_id"
)


async def find_person(conn: Conn, platform: str, user_id: str) -> PersonRecord | None:
    """The person who owns the account, read without a lock; None for an account never seen."""
    row = await conn.fetch_one(_RECORD, platform=platform, user_id=user_id)
    if row is None:
        return None
    accounts = await conn.fetch_all(_ACCOUNTS, person_id=row["id"])
    return PersonRecord(
        id=row["id"],
        accounts=tuple(
            PersonAccount(a["platform"], a["user_id"], a["chat_id"], a["created_at"])
            for a in accounts
        ),
        conversation=Conversation(row["state"], json.loads(row["data"])),
        updated_at=row["updated_at"],
    )
