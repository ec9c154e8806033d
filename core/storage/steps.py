"""An ordinary update in one statement on PostgreSQL: record its id, save the person's new state
if their version is still the one the step began from, keep the inline replies, queue the rest in
the outbox. All of it or nothing: when the person moved on meanwhile (another worker, dyno or
container wrote them), the statement stops with PB409 and nothing of it stays."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

from portabot.messages import Account, Conversation, Delivery, Update
from portabot.replies import dumps
from portabot.storage.database import Conn, Query
from portabot.storage.outbox import LEASE
from portabot.storage.people import Person
from portabot.storage.replies import kept_json
from portabot.storage.updates import SEEN

REMEMBERED = 10_000
"""People a process remembers at most."""
REMEMBERED_BYTES = 32 * 1024 * 1024
"""And at most this much of their states, as JSON text: a state may hold up to
STATE_MAX_BYTES (64 KB), and strangers on the web chat make people."""
CONTENDED = 1.0
"""Seconds after a stale copy during which a person's updates take the transactional path."""
MOVED = "PB409"
"""The SQLSTATE of `portabot_moved()` (migration 0013): the person is not as remembered."""

# The update id goes in first and the person is locked after it, in the order of the
# transactional path (`admit`), so that the two never wait on each other in a cycle. After
# the wait for a lock, PostgreSQL reads the person's row again: `me` then finds the version
# that moved, and the final SELECT raises, which undoes the update id too.
_SAVE_STEP = Query(
    postgresql=f"""
    WITH {SEEN}, me AS (
        SELECT id FROM people
        WHERE id = :person_id AND version = :version AND EXISTS (SELECT 1 FROM seen)
            AND EXISTS (
                SELECT 1 FROM accounts
                WHERE platform = :platform AND user_id = :user_id AND person_id = :person_id
            )
        FOR UPDATE
    ), saved AS (
        UPDATE people
        SET state = :state, data = :data, updated_at = :now, version = version + 1
        WHERE id = (SELECT id FROM me) AND CAST(:save AS boolean)
        RETURNING 1
    ), kept AS (
        INSERT INTO inline_replies (platform, update_id, replies, replied_at)
        SELECT :platform, :update_id, CAST(:replies AS text), :now
        WHERE CAST(:replies AS text) IS NOT NULL AND EXISTS (SELECT 1 FROM me)
        RETURNING 1
    ), queued AS (
        INSERT INTO outbox (platform, chat_id, thread_id, text, reply, key, created_at, due_at)
        SELECT r.platform, r.chat_id, r.thread_id, r.text, r.reply, r.key, :now, :due_at
        FROM jsonb_to_recordset(CAST(:outbox AS jsonb)) AS r(
            platform text, chat_id text, thread_id text, text text, reply text, key text
        )
        WHERE EXISTS (SELECT 1 FROM me)
        RETURNING id, key
    )
    SELECT EXISTS (SELECT 1 FROM seen) AS fresh,
        (
            SELECT received_at = CAST(:now AS double precision) FROM updates
            WHERE platform = :platform AND update_id = :update_id
        ) AS own,
        (SELECT json_agg(json_build_array(key, id)) FROM queued) AS queued,
        (SELECT count(*) FROM saved) + (SELECT count(*) FROM kept) AS written,
        CASE WHEN EXISTS (SELECT 1 FROM seen) AND NOT EXISTS (SELECT 1 FROM me)
            THEN portabot_moved() END AS moved
    """
)


@dataclass(frozen=True, slots=True)
class Saved:
    fresh: bool
    """False: a re-delivery (nothing was written)."""
    later: list[Delivery]
    """The outbox's deliveries, with their ids, leased to the caller to send next."""
    own: bool = False
    """Not fresh, but recorded at this very `now`: this was the statement sent again after its
    connection was lost (`Database.autocommit`), and its first try had committed. Its outbox
    rows are then sent when their lease ends."""


async def save_step(
    conn: Conn,
    update: Update,
    account: Account,
    person: Person,
    conversation: Conversation | None,
    inline: list[Delivery],
    later: list[Delivery],
    now: float,
    *,
    data_json: str | None = None,
) -> Saved:
    """Everything an ordinary update changes, in one round trip (an autocommit connection):
    `conversation` None leaves the state as it is (`data_json`: its data as JSON, if already
    written). Raises asyncpg's error with MOVED when `person` is no longer at its version (or
    no longer owns the account)."""
    state = data = None
    if conversation is not None:
        state = conversation.state
        data = data_json or dumps(conversation.data)
    queued = [
        {
            "platform": d.platform,
            "chat_id": d.chat_id,
            "thread_id": d.thread_id,
            "text": d.text,
            "reply": None if (extra := d.extra()) is None else dumps(extra),
            "key": d.key,
        }
        for d in later
    ]
    row = await conn.fetch_one(
        _SAVE_STEP,
        platform=update.platform,
        update_id=update.update_id,
        now=now,
        person_id=person.id,
        version=person.version,
        user_id=account.user_id,
        save=conversation is not None,
        state=state,
        data=data if data is not None else "{}",
        replies=kept_json(inline) if inline else None,
        outbox=dumps(queued),
        due_at=now + LEASE,
    )
    assert row is not None  # the final SELECT always gives one row
    if not row["fresh"]:
        return Saved(False, [], own=bool(row["own"]))
    ids = dict(json.loads(row["queued"])) if row["queued"] else {}
    return Saved(True, [replace(d, outbox_id=ids[d.key]) for d in later])


class Remembered:
    """The people this process stepped last, by account, as they were saved: an ordinary
    update of theirs needs no read before its one statement. Bounded (least recently used
    first out); a copy that went stale costs one failed statement, never a wrong save. A person
    whose copy went stale is contended for CONTENDED seconds: their updates lock them instead
    (under a burst spread over workers, trying in one statement would mostly fail)."""

    def __init__(
        self, size: int = REMEMBERED, budget: int = REMEMBERED_BYTES, contended: float = CONTENDED
    ) -> None:
        self.size = size
        self.budget = budget
        self.contended_for = contended
        self._people: OrderedDict[tuple[str, str], tuple[Person, int]] = OrderedDict()
        self._bytes = 0
        self._contended: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._handled: OrderedDict[tuple[str, str], None] = OrderedDict()

    def get(self, account: Account) -> Person | None:
        key = (account.platform, account.user_id)
        found = self._people.get(key)
        if found is None:
            return None
        self._people.move_to_end(key)
        return found[0]

    def put(self, account: Account, person: Person, *, size: int | None = None) -> None:
        """Remember `person`, whose data is `size` characters as JSON (None: not known yet)."""
        key = (account.platform, account.user_id)
        self.forget(account)
        if size is None:
            size = len(dumps(person.conversation.data))
        self._people[key] = (person, size)
        self._bytes += size
        while len(self._people) > self.size or self._bytes > self.budget:
            _, (_, dropped) = self._people.popitem(last=False)
            self._bytes -= dropped

    def saved(
        self,
        account: Account,
        person: Person,
        conversation: Conversation,
        now: float,
        *,
        changed: bool,
        data_json: str | None = None,
    ) -> None:
        """Remember `person` as a step left them: with `conversation` (its data as `data_json`,
        if written already) and, when the step wrote them (`changed`), the next version and
        `now` as when."""
        if changed:  # Person(...), not dataclasses.replace: this runs for every update
            person = Person(person.id, conversation, person.platforms, now, person.version + 1)
        self.put(account, person, size=None if data_json is None else len(data_json))

    def moved(self, account: Account) -> None:
        """The remembered copy was stale: forgotten, and the person contended for a while."""
        key = (account.platform, account.user_id)
        self.forget(account)
        self._contended[key] = time.monotonic() + self.contended_for
        self._contended.move_to_end(key)
        if len(self._contended) > self.size:
            self._contended.popitem(last=False)

    def forget(self, account: Account) -> None:
        found = self._people.pop((account.platform, account.user_id), None)
        if found is not None:
            self._bytes -= found[1]

    def contended(self, account: Account) -> bool:
        key = (account.platform, account.user_id)
        until = self._contended.get(key)
        if until is not None and until <= time.monotonic():
            del self._contended[key]
            return False
        return until is not None

    def handled(self, update: Update) -> None:
        """This process has answered `update` (or given it up): a copy of it is checked before
        it is stepped."""
        key = (update.platform, update.update_id)
        self._handled[key] = None
        self._handled.move_to_end(key)
        if len(self._handled) > self.size:
            self._handled.popitem(last=False)

    def seen(self, update: Update) -> bool:
        return (update.platform, update.update_id) in self._handled
