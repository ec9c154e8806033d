"""Timers and replies sent later: `ctx.wake(name, after=...)` steps the flow again when the time
comes (a Kind.TIMER message, routed by `@timer(name)`); `ctx.later(..., after=...)` sends a reply
then, with no step; `ctx.cancel(key)` drops either. Each is a job (storage/jobs.py), stored with
the step that asked and done once by whichever runner claims it (core/jobs.py). A key names one
job of a person: asking again with a key replaces its job."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from portabot.conversation.routing import check_name
from portabot.effects import CoreEffect
from portabot.replies import Reply, ReplyError

if TYPE_CHECKING:
    from portabot.effects import Storing

MAX_DELAY = 366 * 86_400.0
"""The furthest ahead a timer may be set (a year and a day): further is surely a unit mix-up."""
MAX_KEY = 100
MAX_DATA_BYTES = 4096
"""A timer's data as JSON: what it needs to say what is due, not a store (that is ctx.data)."""


def due_time(now: float, at: float | datetime | None, after: float | timedelta | None) -> float:
    """When a timer asked for at `at` (Unix seconds or an aware datetime) or `after` (seconds or
    a timedelta) from `now` is due; ReplyError for anything else."""
    if (at is None) == (after is None):
        raise ReplyError("give one of at= (a time) or after= (seconds or a timedelta)")
    if after is not None:
        seconds = after.total_seconds() if isinstance(after, timedelta) else after
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ReplyError(f"after= is seconds or a timedelta, not {after!r}")
        if not 0 <= seconds <= MAX_DELAY:
            raise ReplyError(f"after= is 0 to {MAX_DELAY:.0f} seconds (a year), not {seconds!r}")
        return now + seconds
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ReplyError("at= is an aware datetime (tzinfo=UTC, say), not a naive one")
        when = at.timestamp()
    elif isinstance(at, int | float) and not isinstance(at, bool):
        when = float(at)
    else:
        raise ReplyError(f"at= is Unix seconds or an aware datetime, not {at!r}")
    if not math.isfinite(when) or when > now + MAX_DELAY:
        raise ReplyError("at= is at most a year ahead")
    return max(when, now)  # a time past is due at once


def check_key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY or not key.isprintable():
        raise ReplyError(f"key is 1 to {MAX_KEY} printable characters, not {key!r}")
    return key


def check_data(data: Any, limit: int, what: str) -> Any:
    """`data` if it comes back from JSON as it is and fits `limit` bytes; else ReplyError."""
    from portabot.conversation.engine import StateError, check_json

    try:
        check_json(data, what)
    except StateError as exc:
        raise ReplyError(str(exc)) from None
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    if size > limit:
        raise ReplyError(f"{what} is {size} bytes as JSON, over {limit}")
    return data


def job_key(key: str) -> str:
    """The jobs table's key of a timer or reply sent later the flow named."""
    return f"at:{key}"


@dataclass(frozen=True, slots=True)
class Wake(CoreEffect):
    """`ctx.wake(...)`: step the flow with a Kind.TIMER message named `name` at `due_at`."""

    name: str
    due_at: float
    data: dict[str, Any]
    key: str

    async def store(self, storing: Storing) -> None:
        from portabot.storage.jobs import TIMER, add_job

        await add_job(
            storing.conn,
            TIMER,
            storing.person_id,
            storing.account,
            self.name,
            job_key(self.key),
            self.data,
            self.due_at,
            storing.now,
        )


@dataclass(frozen=True, slots=True)
class Later(CoreEffect):
    """`ctx.later(...)`: send `reply` to the chat at `due_at` (no step)."""

    reply: Reply
    due_at: float
    key: str | None

    async def store(self, storing: Storing) -> None:
        from portabot.storage.jobs import REPLY, add_job

        key = job_key(self.key) if self.key is not None else f"later:{storing.key}"
        await add_job(
            storing.conn,
            REPLY,
            storing.person_id,
            storing.account,
            "",
            key,
            self.reply.to_json(),
            self.due_at,
            storing.now,
        )


@dataclass(frozen=True, slots=True)
class Cancel(CoreEffect):
    """`ctx.cancel(key)`: drop the person's timer or reply sent later of this key."""

    key: str

    async def store(self, storing: Storing) -> None:
        from portabot.storage.jobs import drop_job

        await drop_job(storing.conn, storing.person_id, job_key(self.key))


def wake(
    name: str,
    now: float,
    at: float | datetime | None,
    after: float | timedelta | None,
    data: dict[str, Any] | None,
    key: str | None,
) -> Wake:
    """The checked Wake effect (ReplyError or FlowError naming what is wrong)."""
    check_name("timer", name)
    given = {} if data is None else data
    if not isinstance(given, dict):
        raise ReplyError(f"a timer's data is a dict, not {type(given).__name__}")
    check_data(given, MAX_DATA_BYTES, f"timer {name!r}: data")
    return Wake(name, due_time(now, at, after), given, check_key(name if key is None else key))
