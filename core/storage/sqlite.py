"""SQLite's writer: one connection per process, and group commit.

SQLite takes one writer at a time, and in WAL mode with `synchronous=FULL` every COMMIT waits for
the disk (about 0.5 ms here, most of an update's time). So transactions take turns on one
connection, and the ones that queue up while another runs join its transaction, each in its own
SAVEPOINT (a body that fails undoes only its own changes), and share its COMMIT. Every caller
continues only once that COMMIT is done: nothing is acknowledged before it is on disk.

The statements run on the event loop's own thread: inside a transaction that holds SQLite's
write lock they take microseconds, less than handing them to a thread would (aiosqlite's way,
one hand-over per statement). Only what can wait runs in a thread: BEGIN IMMEDIATE (for another
process's transaction, up to the busy timeout) and COMMIT (for the disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable

MAX_GROUP = 64
"""Transactions that share one COMMIT at most (a bound on the latency a busy queue adds)."""


class GroupCommit:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._turn = asyncio.Lock()
        self._queued = 0
        self._group: asyncio.Future[None] | None = None
        """The open transaction's COMMIT, which every member awaits."""
        self._members = 0

    async def close(self) -> None:
        async with self._turn:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        self._queued += 1
        try:
            await self._turn.acquire()
        finally:
            self._queued -= 1
        failure: BaseException | None = None
        try:
            conn, group = await self._join()
            try:
                yield conn
            except BaseException as exc:
                failure = exc
            await self._leave(group, undo=failure is not None)
        finally:
            self._turn.release()
        if failure is not None:
            raise failure
        await group

    async def _join(self) -> tuple[sqlite3.Connection, asyncio.Future[None]]:
        if self._conn is None:
            self._conn = self._connect()
        if self._group is None:
            await self._wait_for("BEGIN IMMEDIATE")
            self._group = asyncio.get_running_loop().create_future()
            self._members = 0
        group = self._group
        self._members += 1
        try:
            self._execute("SAVEPOINT body")
        except BaseException as exc:
            await self._abandon(exc)
            raise
        return self._conn, group

    async def _leave(self, group: asyncio.Future[None], *, undo: bool) -> None:
        try:
            if undo:
                self._execute("ROLLBACK TO body")
            self._execute("RELEASE body")
            if self._queued and self._members < MAX_GROUP:
                return  # the next in the queue joins; the last one commits for all
            await self._wait_for("COMMIT")
        except BaseException as exc:
            await self._abandon(exc)
            return
        self._group = None
        group.set_result(None)

    async def _abandon(self, exc: BaseException) -> None:
        """The transaction cannot go on: roll it back, and every member fails with `exc`."""
        group, self._group = self._group, None
        with contextlib.suppress(Exception):
            await self._wait_for("ROLLBACK")
        if group is not None and not group.done():
            group.set_exception(exc)
            group.exception()  # each member raises it; none need be told it was not looked at

    def _execute(self, sql: str) -> None:
        assert self._conn is not None
        self._conn.execute(sql)

    async def _wait_for(self, sql: str) -> None:
        """A statement that may wait (for the disk, or another process): in a thread."""
        assert self._conn is not None
        await asyncio.get_running_loop().run_in_executor(None, self._conn.execute, sql)
