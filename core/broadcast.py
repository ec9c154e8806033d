"""`portabot broadcast`: one message to every person (or a flow's audience) on every platform each
linked, paced by the platforms' limits (outbound.py), resumable and safe to run twice at once.

A person is told once per key: the mark `KEY:<person id>` goes into `updates` (platform
`broadcast`) in the transaction that stores their messages (a batch of people at a time), so a
second run with the key skips whom the first stored, and one running beside it waits on the marks
it is writing and then skips them too. The messages are keyed `broadcast:KEY:<person id>…` and
due for any sender; each run sends what is due (its own, the other's, the outbox's other replies)
until nothing of the key is waiting, so whatever a run stored and did not send, the next sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from portabot.storage.database import Query, Row
from portabot.storage.outbox import claim_due, postpone
from portabot.storage.telling import tell
from portabot.storage.updates import record_update
from portabot.telling import TellError

if TYPE_CHECKING:
    from portabot.conversation.engine import Audience
    from portabot.outbound import Outbound
    from portabot.replies import Reply

MARK = "broadcast"
"""The `updates` platform under which a broadcast marks the people it has stored."""
MAX_KEY = 40
"""The longest --id: the mark `KEY:<person id>` is an update id (a String(64))."""
MAX_TEXT = 4096
"""The longest text: one message on every platform (Telegram's and VK's length)."""
PEOPLE_BATCH = 200
"""People stored per transaction: a few hundred short statements, not one per person (too many
commits) nor one for everyone (locks held for minutes)."""
SEND_BATCH = 10
"""Replies claimed at a time: few enough that a stop gives back little, and that each is sent
well within its lease at the paced rate."""
PROGRESS_EVERY = 2.0
"""Seconds between looks at how far the key's messages are (its count over the outbox)."""
MAX_PAUSE = 300.0
"""Seconds a run waits for its next message to come due; a longer pause (a platform's 429 with
a long retry_after) ends the run, the messages staying due for `portabot deliver` or a rerun."""
MAX_NAP = 1.0
"""Longest wait for the next message to come due (another run's, or one put off by a limit)."""

_PEOPLE = Query("SELECT id, state, data FROM people WHERE id > :after ORDER BY id LIMIT :limit")
_COUNT_PEOPLE = Query("SELECT count(*) FROM people")
_OF_KEY = "substr(key, 1, :length) = :prefix"
_STANDING = Query(
    f"""
    SELECT count(*) AS stored, count(sent_at) AS sent, count(gave_up_at) AS refused,
        sum(CASE WHEN sent_at IS NULL AND gave_up_at IS NULL AND attempts > 0
            THEN 1 ELSE 0 END) AS failing,
        min(CASE WHEN sent_at IS NULL AND gave_up_at IS NULL AND attempts = 0
            THEN coalesce(due_at, 0) END) AS next_due
    FROM outbox WHERE {_OF_KEY}
    """
)


class BroadcastError(Exception):
    """A broadcast that cannot go on (the audience's function failed): one line."""


@dataclass(slots=True)
class Standing:
    """Where the key's messages through the APIs are, whoever stored or sent them."""

    stored: int = 0
    sent: int = 0
    refused: int = 0
    failing: int = 0
    """Failed once at least: retried with backoff by later senders (portabot deliver)."""
    next_due: float | None = None
    """When the next one not tried yet is due (None: none waits)."""

    @property
    def done(self) -> int:
        return self.sent + self.refused


@dataclass(slots=True)
class Summary:
    key: str
    selected: int = 0
    """People the audience chose (everyone without one)."""
    stored: int = 0
    """People this run stored messages for (the others had them from an earlier run)."""
    kept: int = 0
    """Messages this run put in web visitors' inboxes."""
    skipped: set[str] = field(default_factory=set)
    """Platforms people linked that this deployment has no channel for."""
    standing: Standing = field(default_factory=Standing)
    stopped: bool = False
    paused_until: float | None = None
    """The run ended because nothing of the key was due before then (a platform's pause)."""

    def line(self) -> str:
        s = self.standing
        parts = [
            f"broadcast {self.key}: {self.selected} people"
            f" ({self.stored} stored now, {self.selected - self.stored} before)",
            f"{s.sent} of {s.stored} sent through the APIs",
        ]
        if s.refused:
            parts.append(f"{s.refused} refused for good")
        if s.failing:
            parts.append(f"{s.failing} left for a later try (portabot deliver)")
        waiting = s.stored - s.done - s.failing
        if waiting and self.paused_until is not None:
            at = datetime.fromtimestamp(self.paused_until, UTC).strftime("%H:%M:%S UTC")
            parts.append(
                f"{waiting} not sent yet, due from {at} (a platform asked to wait): "
                f"portabot deliver sends them then, or run again with --id {self.key}"
            )
        elif waiting:
            parts.append(f"{waiting} not sent yet (run again with --id {self.key})")
        if self.kept:
            parts.append(f"{self.kept} put in web inboxes")
        if self.skipped:
            parts.append(f"not sent to {', '.join(sorted(self.skipped))}: not configured here")
        return "; ".join(parts)


class Progress:
    """One line on `stream`: rewritten in place on a terminal, else a line every `step`."""

    def __init__(self, stream: TextIO, step: float = 0.1) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.step = step
        self._shown: dict[str, float] = {}
        self._width = 0

    def show(self, phase: str, text: str, fraction: float) -> None:
        """`text` for how far `phase` is (a fraction of 1)."""
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            reached = int(min(fraction, 1.0) / self.step + 1e-9) * self.step
            if self._shown.get(phase, -1.0) >= reached:
                return
            self._shown[phase] = reached
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


def prefix(key: str) -> str:
    return f"{MARK}:{key}:"


async def broadcast(
    outbound: Outbound,
    reply: Reply,
    key: str,
    *,
    audience: Audience | None = None,
    platforms: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Store the message for everyone the audience selects (all without one) who was not stored
    under `key` before, then send until nothing of the key waits. SIGINT or SIGTERM stops it
    between batches, giving back what it had claimed (`Summary.stopped`)."""
    progress = progress or Progress(sys.stderr)
    summary = Summary(key)
    with _stop_signals() as stopping:
        await _store(outbound, reply, key, audience, platforms, summary, progress, stopping)
        if not stopping.is_set():
            await _send(outbound, key, summary, progress, stopping)
        summary.standing = await standing(outbound, key)
        summary.stopped = stopping.is_set()
    progress.end()
    return summary


@contextlib.contextmanager
def _stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, so that the work in hand ends cleanly (a send done is
    marked sent, a send not begun is given back) rather than being cut off."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    caught = [signal.SIGINT, signal.SIGTERM]
    for number in caught:
        loop.add_signal_handler(number, stopping.set)
    try:
        yield stopping
    finally:
        for number in caught:
            loop.remove_signal_handler(number)


async def _store(
    outbound: Outbound,
    reply: Reply,
    key: str,
    audience: Audience | None,
    platforms: Sequence[str] | None,
    summary: Summary,
    progress: Progress,
    stopping: asyncio.Event,
) -> None:
    db = outbound.db
    async with db.autocommit() as conn:
        everyone: int = await conn.fetch_val(_COUNT_PEOPLE)
    after, looked = 0, 0
    while not stopping.is_set():
        async with db.autocommit() as conn:
            rows = await conn.fetch_all(_PEOPLE, after=after, limit=PEOPLE_BATCH)
        if not rows:
            return
        after = rows[-1]["id"]
        looked += len(rows)
        chosen = [row["id"] for row in rows if _selects(audience, row)]
        summary.selected += len(chosen)
        now = time.time()
        async with db.transaction() as conn:
            for person_id in chosen:
                if not await record_update(conn, MARK, f"{key}:{person_id}", now):
                    continue  # stored by an earlier run, or by one running beside this
                try:
                    told = await tell(
                        conn,
                        person_id,
                        reply,
                        f"{prefix(key)}{person_id}",
                        now,
                        outbound.channels,
                        platforms,
                        leased=False,
                    )
                except TellError:
                    continue  # merged into another person since the batch was read
                summary.stored += 1
                summary.kept += len(told.kept)
                summary.skipped.update(told.skipped)
        everyone = max(everyone, looked)
        progress.show(
            "store",
            f"broadcast {key}: {looked} of {everyone} people looked at, {summary.stored} stored",
            looked / everyone,
        )


def _selects(audience: Audience | None, row: Row) -> bool:
    if audience is None:
        return True
    try:
        return bool(audience(row["state"], json.loads(row["data"])))
    except Exception as exc:
        raise BroadcastError(
            f"the audience failed on person {row['id']}: {type(exc).__name__}: {exc}"
        ) from None


async def _send(
    outbound: Outbound, key: str, summary: Summary, progress: Progress, stopping: asyncio.Event
) -> None:
    """Send what is due, a few at a time, until none of the key's messages waits for a first
    try (those that failed are left to the outbox's backoff)."""
    looked = 0.0
    while not stopping.is_set():
        leased_at = time.time()
        claimed = await claim_due(outbound.db, leased_at, SEND_BATCH)
        for position, delivery in enumerate(claimed):
            if stopping.is_set():  # what is not begun goes back, due at once for anyone
                for left in claimed[position:]:
                    assert left.outbox_id is not None
                    await postpone(outbound.db, left.outbox_id, time.time())
                return
            await outbound.deliver([delivery], leased_at=leased_at)
        if claimed and time.monotonic() - looked < PROGRESS_EVERY:
            continue
        looked = time.monotonic()
        now = await standing(outbound, key)
        progress.show(
            "send",
            f"broadcast {key}: {now.done} of {now.stored} messages sent",
            now.done / now.stored if now.stored else 1.0,
        )
        if now.next_due is None:
            return
        if now.next_due - time.time() > MAX_PAUSE:
            summary.paused_until = now.next_due
            return
        if not claimed:
            nap = min(MAX_NAP, max(0.05, now.next_due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), nap)


async def standing(outbound: Outbound, key: str) -> Standing:
    start = prefix(key)
    async with outbound.db.autocommit() as conn:
        row = await conn.fetch_one(_STANDING, length=len(start), prefix=start)
    assert row is not None
    return Standing(
        stored=row["stored"],
        sent=row["sent"],
        refused=row["refused"],
        failing=row["failing"] or 0,
        next_due=row["next_due"],
    )
