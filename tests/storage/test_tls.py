"""PostgreSQL that requires TLS, as Heroku's does: a loopback TLS proxy before the test server."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from asyncpg.exceptions import ConnectionDoesNotExistError
from sqlalchemy.exc import DBAPIError

from core.settings import Settings, normalise_database_url
from core.storage.database import Database
from core.storage.migrate import head_revision, upgrade
from tests.servers import run

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        # Closing one side ends the other pipe too: its reader sees EOF.
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 5)


class TlsProxy:
    """Answers PostgreSQL's SSLRequest, ends TLS and pipes to the plain server; no TLS, no entry."""

    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self.context = context
        self.upstream = upstream
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("TLS proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "TLS proxy did not stop"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
        finally:
            self._ready.set()
        async with server:
            await self._stop.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            request = await reader.readexactly(8)
            if request == GSSENC_REQUEST:  # libpq asks for GSS encryption first; decline it
                writer.write(b"N")
                request = await reader.readexactly(8)
            if request != SSL_REQUEST:
                return  # a plain StartupMessage: refused, like a server with only `hostssl`
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self.context)
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            if upstream is not None:
                await _close(upstream)
            await _close(writer)
            self._tasks.discard(task)


def _tls_context(directory: Path) -> ssl.SSLContext:
    key, cert = directory / "key.pem", directory / "cert.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    subprocess.run(
        [*command.split(), "-keyout", key, "-out", cert], check=True, capture_output=True
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def tls_postgres_url(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """`postgres_url` (migrated, or skipped) reached only through the TLS proxy."""
    parts = urlsplit(postgres_url)
    upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
    with TlsProxy(_tls_context(tmp_path), upstream) as proxy:
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
        yield urlunsplit(("postgresql", netloc, parts.path, "", ""))


def heroku_url(url: str, query: str) -> str:
    """The URL as Heroku hands it out: `postgres://` with a libpq-style query."""
    return url.replace("postgresql://", "postgres://", 1) + "?" + query


async def _ping(url: str) -> None:
    database = Database(url)
    try:
        await database.ping()
    finally:
        await database.close()


def test_heroku_style_url_with_sslmode_require_works(tls_postgres_url: str) -> None:
    url = normalise_database_url(heroku_url(tls_postgres_url, "sslmode=require"))
    assert url.startswith("postgresql://") and url.endswith("?ssl=require")
    run(_ping(url))
    # Alembic goes through SQLAlchemy's asyncpg dialect, a second path for `ssl`.
    assert upgrade(url) == head_revision()


def test_the_proxy_refuses_clients_without_tls(tls_postgres_url: str) -> None:
    url = normalise_database_url(heroku_url(tls_postgres_url, "sslmode=disable"))
    assert url.endswith("?ssl=disable")
    # Dropped before any reply: asyncpg sees EOF, or a reset if the startup was left unread.
    with pytest.raises((ConnectionDoesNotExistError, OSError)):
        run(_ping(url))
    # asyncpg's default (`prefer`) would take TLS anyway: only `disable` shows `ssl` got through.
    with pytest.raises(DBAPIError):
        upgrade(url)


def test_settings_accept_the_heroku_url() -> None:
    url = "postgres://user:pw@db.example.com:5432/d1?sslmode=require"
    database_url = Settings(_env_file=None, database_url=url).database_url  # type: ignore[call-arg]
    assert database_url.startswith("postgresql://")
    assert "ssl=require" in database_url
