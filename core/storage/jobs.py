"""Jobs: timers, replies sent later and outside calls, stored in the transaction of the step that
asked and done by whichever runner claims them first (`portabot tick`, a server's own loop, the
Lambda schedule). A job is deleted in the transaction that finishes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from portabot.messages import Account
from portabot.replies import dumps
from portabot.storage.database import Conn, Database, Query

TIMER, REPLY, CALL = "timer", "reply", "call"
"""The kinds of job: a timer steps the flow, a reply is sent, a call runs a service first."""

_ADD = Query(
    "INSERT INTO jobs (kind, person_id, platform, user_id, chat_id, thread_id, name, key, data,"
    " due_at, created_at) VALUES (:kind, :person_id, :platform, :user_id, :chat_id, :thread_id,"
    " :name, :key, :data, :due_at, :now)"
)
_DROP = Query("DELETE FROM jobs WHERE person_id = :person_id AND key = :key")
# Claimed jobs are leased to one runner; another may take one only once its lease is over (the
# runner died). PostgreSQL's runners skip each other's rows; SQLite has one writer at a time. A
# claim counts as an attempt, so that a call whose runner keeps dying during it (a Lambda
# invocation's timeout) comes to an end too.
_CLAIM = Query(
    """
    UPDATE jobs SET leased_until = :lease_until, attempts = attempts + 1
    WHERE id IN (
        SELECT id FROM jobs WHERE due_at <= :now AND (leased_until IS NULL OR leased_until <= :now)
        ORDER BY due_at, id LIMIT :limit {skip_locked}
    )
    RETURNING id, kind, person_id, platform, user_id, chat_id, thread_id, name, key, data,
        attempts, outcome
    """
)
_FINISH = Query("DELETE FROM jobs WHERE id = :id RETURNING 1")
_RETRY = Query(
    "UPDATE jobs SET last_error = :error, due_at = :due_at, leased_until = NULL WHERE id = :id"
)
_OUTCOME = Query(
    "UPDATE jobs SET outcome = :outcome, last_error = :error WHERE id = :id AND outcome IS NULL"
)
_MOVE = Query("UPDATE jobs SET person_id = :kept WHERE person_id = :absorbed")
_DROP_CLASHING = Query(
    "DELETE FROM jobs WHERE person_id = :absorbed"
    " AND key IN (SELECT key FROM jobs WHERE person_id = :kept)"
)
_COUNT = Query("SELECT count(*) FROM jobs WHERE due_at <= :now")


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job."""

    id: int
    kind: str
    person_id: int
    account: Account
    name: str
    key: str
    data: Any
    attempts: int
    """Claims of the job so far, this one included."""
    outcome: dict[str, Any] | None
    """A call's result (`{"result": ...}`) or failure (`{"error": "..."}`), once it came."""


async def add_job(
    conn: Conn,
    kind: str,
    person_id: int,
    account: Account,
    name: str,
    key: str,
    data: Any,
    due_at: float,
    now: float,
) -> None:
    """Store a job, replacing the person's job of the same key (a timer set again)."""
    await conn.execute(_DROP, person_id=person_id, key=key)
    await conn.execute(
        _ADD,
        kind=kind,
        person_id=person_id,
        platform=account.platform,
        user_id=account.user_id,
        chat_id=account.chat_id,
        thread_id=account.thread_id,
        name=name,
        key=key,
        data=dumps(data),
        due_at=due_at,
        now=now,
    )


async def drop_job(conn: Conn, person_id: int, key: str) -> None:
    """Cancel the person's job of this key, if there is one."""
    await conn.execute(_DROP, person_id=person_id, key=key)


async def claim_jobs(db: Database, now: float, lease: float, limit: int) -> list[Job]:
    """Take up to `limit` due jobs, the longest due first, leasing them until `now + lease`."""
    async with db.transaction() as conn:
        rows = await conn.fetch_all(_CLAIM, now=now, lease_until=now + lease, limit=limit)
    jobs = [
        Job(
            id=r["id"],
            kind=r["kind"],
            person_id=r["person_id"],
            account=Account(r["platform"], r["user_id"], r["chat_id"], thread_id=r["thread_id"]),
            name=r["name"],
            key=r["key"],
            data=json.loads(r["data"]),
            attempts=r["attempts"],
            outcome=json.loads(r["outcome"]) if r["outcome"] else None,
        )
        for r in rows
    ]
    return sorted(jobs, key=lambda job: job.id)


async def finish_job(conn: Conn, job_id: int) -> bool:
    """Delete a job in the transaction that did it; False: another runner finished it first."""
    return await conn.fetch_one(_FINISH, id=job_id) is not None


async def retry_job(db: Database, job_id: int, error: str, due_at: float) -> None:
    """A call's attempt failed: try again at `due_at`."""
    async with db.autocommit() as conn:
        await conn.execute(_RETRY, error=error[:200], due_at=due_at, id=job_id)


async def keep_outcome(db: Database, job_id: int, outcome: dict[str, Any]) -> None:
    """Store a call's result (or final failure) before the flow sees it: a runner that dies
    after this never calls the service again for the job."""
    error = outcome.get("error")
    async with db.autocommit() as conn:
        await conn.execute(
            _OUTCOME,
            outcome=dumps(outcome),
            error=None if error is None else str(error)[:200],
            id=job_id,
        )


async def move_jobs(conn: Conn, kept: int, absorbed: int) -> None:
    """Two people became one: the absorbed one's jobs move to the kept one, but where both have
    a job of one key, the kept one's stays."""
    await conn.execute(_DROP_CLASHING, kept=kept, absorbed=absorbed)
    await conn.execute(_MOVE, kept=kept, absorbed=absorbed)


async def count_due_jobs(db: Database, now: float) -> int:
    async with db.autocommit() as conn:
        count: int = await conn.fetch_val(_COUNT, now=now)
    return count
