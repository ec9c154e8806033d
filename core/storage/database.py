"""The database handle: connects on first use, keeps its connections, runs transactions.

It talks to the drivers directly, asyncpg for PostgreSQL and sqlite3 for SQLite. Statements are
SQL text written once for both (`Query`), turned into the driver's parameter style on first use,
and asyncpg keeps them prepared. Nothing builds or compiles a query while serving, and neither
SQLAlchemy nor Alembic is imported then: they describe the schema (tables.py) and migrate it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from portabot.settings import postgres_connection

if TYPE_CHECKING:
    import sqlite3

    import asyncpg

    from portabot.storage.sqlite import GroupCommit

SQLITE_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for another process's transaction before failing."""

_WORDS = {
    "postgresql": {"for_update": "FOR UPDATE", "skip_locked": "FOR UPDATE SKIP LOCKED"},
    "sqlite": {"for_update": "", "skip_locked": ""},  # one writer at a time: nothing to lock
}
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Row(Protocol):
    """A result row: by column name or by position (asyncpg's Record, sqlite3's Row)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Query:
    """SQL with `:name` parameters. `{for_update}` and `{skip_locked}` become each database's
    words for row locks; `postgresql=`/`sqlite=` give a database its own text."""

    __slots__ = ("_compiled", "_texts")

    def __init__(self, text: str = "", **by_dialect: str) -> None:
        self._texts = {"postgresql": text, "sqlite": text, **by_dialect}
        self._compiled: dict[str, tuple[str, tuple[str, ...]]] = {}

    def compiled(self, dialect: str) -> tuple[str, tuple[str, ...]]:
        """The text for `dialect`, in its driver's style ($1 for asyncpg; sqlite3 takes :name),
        and the parameters' names in order."""
        found = self._compiled.get(dialect)
        if found is None:
            text = self._texts[dialect].format(**_WORDS[dialect])
            if dialect == "sqlite":
                found = (text, ())
            else:
                names: list[str] = []

                def number(match: re.Match[str]) -> str:
                    if match[1] not in names:
                        names.append(match[1])
                    return f"${names.index(match[1]) + 1}"

                found = (_PARAMETER.sub(number, text), tuple(names))
            self._compiled[dialect] = found
        return found


T = TypeVar("T")


class Conn(Protocol):
    """A connection inside a transaction (or, from `autocommit`, outside of one)."""

    dialect: str

    async def fetch_all(self, query: Query, **params: Any) -> list[Row]: ...

    async def fetch_one(self, query: Query, **params: Any) -> Row | None: ...

    async def fetch_val(self, query: Query, **params: Any) -> Any: ...

    async def execute(self, query: Query, **params: Any) -> None: ...


class _PostgresConn:
    dialect = "postgresql"
    __slots__ = ("_raw",)

    def __init__(self, raw: asyncpg.Connection) -> None:
        self._raw = raw

    async def fetch_all(self, query: Query, **params: Any) -> list[Row]:
        sql, names = query.compiled(self.dialect)
        rows: list[Row] = await self._raw.fetch(sql, *[params[name] for name in names])
        return rows

    async def fetch_one(self, query: Query, **params: Any) -> Row | None:
        sql, names = query.compiled(self.dialect)
        row: Row | None = await self._raw.fetchrow(sql, *[params[name] for name in names])
        return row

    async def fetch_val(self, query: Query, **params: Any) -> Any:
        sql, names = query.compiled(self.dialect)
        return await self._raw.fetchval(sql, *[params[name] for name in names])

    async def execute(self, query: Query, **params: Any) -> None:
        sql, names = query.compiled(self.dialect)
        await self._raw.execute(sql, *[params[name] for name in names])


class _AutocommitConn(_PostgresConn):
    """A pooled connection outside a transaction, taken from the pool for an `async with`. Its
    first statement is also the first use of a connection that may have died while idle (a
    server restart, a Lambda container thawed after its sockets died): then every pooled
    connection is replaced and the statement is sent once more on a new one. A backend that is
    gone ran nothing, so nothing happens twice. (A class, not an asynccontextmanager: the
    generator's machinery was 5% of a worker's CPU under load.)"""

    __slots__ = ("_db", "_pool", "_used")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._used = False

    async def __aenter__(self) -> Conn:
        self._pool = await self._db._postgres()
        self._raw = await self._pool.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pool.release(self._raw)

    async def _first_try(
        self, statement: Callable[..., Awaitable[T]], query: Query, params: dict[str, Any]
    ) -> T:
        if self._used:
            return await statement(query, **params)
        self._used = True
        try:
            return await statement(query, **params)
        except Exception as exc:
            if not _is_stale(exc):
                raise
        with contextlib.suppress(Exception):
            await self._pool.release(self._raw)
        await self._pool.expire_connections()
        self._raw = await self._pool.acquire()
        return await statement(query, **params)

    async def fetch_all(self, query: Query, **params: Any) -> list[Row]:
        return await self._first_try(super().fetch_all, query, params)

    async def fetch_one(self, query: Query, **params: Any) -> Row | None:
        return await self._first_try(super().fetch_one, query, params)

    async def fetch_val(self, query: Query, **params: Any) -> Any:
        return await self._first_try(super().fetch_val, query, params)

    async def execute(self, query: Query, **params: Any) -> None:
        await self._first_try(super().execute, query, params)


def _is_stale(exc: BaseException) -> bool:
    """A pooled connection the server has closed: lost, or (while asyncpg still reads the
    server's goodbye) "another operation is in progress"."""
    return is_connection_lost(exc) or type(exc).__name__ == "InternalClientError"


class _SqliteConn:
    """sqlite3 on the event loop's thread, inside the writer's transaction (see sqlite.py)."""

    dialect = "sqlite"
    __slots__ = ("_raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    async def fetch_all(self, query: Query, **params: Any) -> list[Row]:
        sql, _ = query.compiled(self.dialect)
        rows: list[Row] = self._raw.execute(sql, params).fetchall()
        return rows

    async def fetch_one(self, query: Query, **params: Any) -> Row | None:
        sql, _ = query.compiled(self.dialect)
        row: Row | None = self._raw.execute(sql, params).fetchone()
        return row

    async def fetch_val(self, query: Query, **params: Any) -> Any:
        row = await self.fetch_one(query, **params)
        return None if row is None else row[0]

    async def execute(self, query: Query, **params: Any) -> None:
        sql, _ = query.compiled(self.dialect)
        self._raw.execute(sql, params)


def is_connection_lost(exc: BaseException) -> bool:
    """A dead or refused connection, as opposed to a problem with what we asked."""
    if isinstance(exc, OSError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "PostgresConnectionError",  # SQLSTATE class 08
            "ConnectionDoesNotExistError",
            "InterfaceError",
            "OperatorInterventionError",  # 57P01 and friends: terminated by the server
            "CannotConnectNowError",
        }
    )


async def _keep_session(connection: Any) -> None:
    """What the pool does to a connection given back, beyond rolling back an open transaction:
    nothing. Ours keep no session state (no LISTEN, SET or session-level advisory lock), and
    asyncpg's default reset query would be one more round trip per transaction."""


class Database:
    """The process's connections: an asyncpg pool, or one SQLite connection that every
    transaction takes turns on. Made on the first request that needs them."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self.pool_size = pool_size
        # Read once, here: a URL that cannot work fails now, not on every request.
        self._connection = (
            None if self.dialect == "sqlite" else postgres_connection(url, pool_size=pool_size)
        )
        self._pool: asyncpg.Pool | None = None
        self._writer: GroupCommit | None = None
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> None:
        async with self.autocommit() as conn:
            await conn.fetch_val(_PING)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        if self.dialect == "sqlite":
            async with self._sqlite().transaction() as raw:
                yield _SqliteConn(raw)
            return
        pool = await self._postgres()
        raw = await self._begin(pool)
        conn = _PostgresConn(raw)
        try:
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):  # a dead connection: the pool drops it
                    await raw.execute("ROLLBACK")
                raise
            await raw.execute("COMMIT")
        finally:
            await pool.release(raw)

    def autocommit(self) -> contextlib.AbstractAsyncContextManager[Conn]:
        """A connection outside any transaction: each statement commits by itself (one round trip
        where a transaction takes three). On SQLite, the writer's connection and turn. Its first
        statement is sent again on a new connection if the pooled one had died: a statement
        whose effect must not happen twice must tell, when sent again, whether the first time
        committed (`save_step` does)."""
        if self.dialect == "sqlite":
            return self.transaction()
        return _AutocommitConn(self)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Conn]:
        """A PostgreSQL connection of its own, outside the pool, for session state such as an
        advisory lock held while other work goes through the pool (which may be one connection)."""
        import asyncpg

        assert self.dialect == "postgresql"
        assert self._connection is not None
        raw = await asyncpg.connect(self._connection.dsn, **self._connection.connect)
        try:
            yield _PostgresConn(raw)
        finally:
            await raw.close()

    async def _begin(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        """A pooled connection with a transaction started. A server restart, or a Lambda
        container frozen long enough for its sockets to die, shows first here: then every pooled
        connection is replaced and BEGIN is tried once more (nothing of ours has run yet). A
        connection the server has just closed fails in more ways than a lost connection's (such
        as asyncpg's "another operation is in progress" while it reads the server's goodbye), so
        any failure of BEGIN gets the second try."""
        for attempt in (1, 2):
            raw = await pool.acquire()
            try:
                await raw.execute("BEGIN")
            except BaseException as exc:  # cancelled mid-BEGIN too: the pool gets it back
                await pool.release(raw)
                if attempt == 2 or not isinstance(exc, Exception):
                    raise
                await pool.expire_connections()
                continue
            return raw
        raise AssertionError("unreachable")

    def _same_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Connections belong to the loop that made them; a host that runs each request on a
            # new loop (none of ours does) gets new ones rather than broken ones.
            self._pool = self._writer = self._connecting = None
            self._loop = loop

    def _sqlite(self) -> GroupCommit:
        self._same_loop()
        if self._writer is None:
            from portabot.storage.sqlite import GroupCommit  # PostgreSQL deployments skip sqlite3

            self._writer = GroupCommit(self._sqlite_connect)
        return self._writer

    def _sqlite_connect(self) -> sqlite3.Connection:
        import sqlite3

        path = urlsplit(self.url).path[1:] or ":memory:"  # sqlite:///x.db → x.db, //// → /x.db
        # BEGIN and COMMIT run in a thread, the rest on the loop: one at a time (sqlite.py).
        raw = sqlite3.connect(
            path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT, check_same_thread=False
        )
        raw.row_factory = sqlite3.Row
        return raw

    async def _postgres(self) -> asyncpg.Pool:
        self._same_loop()
        if self._pool is not None:
            return self._pool
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._pool is None:
                import asyncpg

                assert self._connection is not None
                connection = self._connection
                self._pool = await asyncpg.create_pool(
                    connection.dsn, reset=_keep_session, **connection.connect, **connection.pool
                )
        return self._pool


_PING = Query("SELECT 1")
