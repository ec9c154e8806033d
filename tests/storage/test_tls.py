"""PostgreSQL that requires TLS, as Heroku's and Neon's do: a loopback TLS proxy before the test
server, reached with the URLs those hosts hand out, on the serving path and by migrations."""

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

import httpx
import pytest
from asyncpg.exceptions import ConnectionDoesNotExistError
from sqlalchemy.exc import DBAPIError

from portabot.app import create_app
from portabot.settings import Settings, normalise_database_url
from portabot.storage.database import Database, Query
from portabot.storage.migrate import head_revision, upgrade
from portabot.testing.fakes import serve
from tests.conftest import make_settings, run, say_web
from tests.test_cli import portabot

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


@contextlib.contextmanager
def behind_tls(postgres_url: str, directory: Path) -> Iterator[str]:
    """`postgres_url` reached only through a TLS proxy (its certificate made in `directory`)."""
    parts = urlsplit(postgres_url)
    upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
    with TlsProxy(_tls_context(directory), upstream) as proxy:
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
        yield urlunsplit(("postgresql", netloc, parts.path, "", ""))


@pytest.fixture
def tls_postgres_url(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """`postgres_url` (migrated, or skipped) reached only through the TLS proxy."""
    with behind_tls(postgres_url, tmp_path) as url:
        yield url


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
    database_url = Settings(database_url=url).database_url
    assert database_url.startswith("postgresql://")
    assert "ssl=require" in database_url


NEON = "sslmode=require&channel_binding=require"
"""The query of the connection string Neon's console hands out."""


def neon_url(url: str) -> str:
    return url + "?" + NEON


async def _in_a_transaction(url: str) -> int:
    database = Database(url)
    try:
        async with database.transaction() as conn:
            await conn.execute(Query("CREATE TEMPORARY TABLE t (n int) ON COMMIT DROP"))
            await conn.execute(Query("INSERT INTO t VALUES (:n)"), n=41)
            return int(await conn.fetch_val(Query("SELECT n + 1 FROM t")))
    finally:
        await database.close()


def test_neons_url_serves_requests(tls_postgres_url: str, empty_postgres: str) -> None:
    """channel_binding went to the server as a setting and failed every request with a 503."""
    url = neon_url(tls_postgres_url)
    settings = make_settings(database_url=url, session_secret="neon")
    with serve(create_app(settings)) as address, httpx.Client(base_url=address) as client:
        assert say_web(client, "/me") == ["Linked platforms: web."]
        assert client.get("/healthz").status_code == 200
    assert run(_in_a_transaction(settings.database_url)) == 42


def test_neons_url_migrates(tls_postgres_url: str, tmp_path: Path) -> None:
    url = neon_url(tls_postgres_url)
    assert upgrade(normalise_database_url(url)) == head_revision()
    result = portabot(tmp_path, "migrate", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert f"revision {head_revision()}" in result.stdout
    check = portabot(tmp_path, "check", DATABASE_URL=url)
    assert "ok   database postgresql://" in check.stdout
    assert (
        "note DATABASE_URL's channel_binding=require dropped (channel binding is not enforced"
        in (check.stdout)
    )


def heroku_dyno_url(url: str) -> str:
    """Heroku's DATABASE_URL: `postgres://user:pass@host:5432/db`, and no sslmode at all."""
    parts = urlsplit(url)
    return (
        f"postgres://{parts.username}:heroku-pw@{parts.hostname}:{parts.port or 5432}{parts.path}"
    )


def test_on_heroku_a_url_without_sslmode_requires_tls(
    tls_postgres_url: str, postgres_url: str, tmp_path: Path
) -> None:
    on_heroku = {"DYNO": "release.1"}
    through_tls = portabot(
        tmp_path, "migrate", DATABASE_URL=heroku_dyno_url(tls_postgres_url), **on_heroku
    )
    assert through_tls.returncode == 0, through_tls.stderr
    # The same URL shape to a server without TLS: refused in one line, where asyncpg's default
    # (`prefer`) would have gone on unencrypted.
    plain = heroku_dyno_url(postgres_url)
    refused = portabot(tmp_path, "migrate", DATABASE_URL=plain, **on_heroku)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "rejected SSL upgrade" in refused.stderr and "heroku-pw" not in refused.stderr
    served = portabot(tmp_path, "check", "--target", "heroku", DATABASE_URL=plain, **on_heroku)
    assert "FAIL database postgres://" not in served.stdout  # shown in the normalised form
    assert "rejected SSL upgrade" in served.stdout
    assert portabot(tmp_path, "migrate", DATABASE_URL=plain).returncode == 0  # off Heroku: prefer
