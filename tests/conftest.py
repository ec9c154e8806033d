"""Fixtures: a migrated database on SQLite and on PostgreSQL, the fake Bot API, the app on
loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling, Scheduling

from portabot.app import create_app
from portabot.conversation.engine import Flow
from portabot.settings import Settings
from portabot.storage.migrate import upgrade
from portabot.storage.tables import metadata
from portabot.testing.fakes import FakeTelegram, FakeVk, serve

POSTGRES_SERVER_URL = os.environ.get(
    "PORTABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""The server each run creates its own databases on (named after this URL's database, see
RunDatabases); the database in the URL itself is only connected to, never changed."""
# In CI a missing PostgreSQL fails the run; elsewhere its tests are skipped.
REQUIRE_POSTGRES = bool(os.environ.get("CI"))
TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
VK_TOKEN = "vk1.a.test-community-token"
VK_GROUP = 777
VK_SECRET = "vkCallbackSecret1"
SECRET = "test-webhook-secret"
BOT_USERNAME = "portabot_test_bot"
TABLES = ", ".join(table.name for table in metadata.sorted_tables)


ONE_WORKER = frozenset(
    {
        "tests/test_bench.py",  # its module fixture runs the bench (a minute or more)
        "tests/test_browser.py",  # its module fixture launches Chromium
        "tests/test_hostile_input.py",  # its last test counts what the others sent, in-process
        "tests/targets/test_lambda.py",  # its module fixture builds the zip
    }
)
"""Modules whose tests pytest-xdist gives to one worker, each as a whole: the rest go one test
at a time to whichever worker is free. (An xdist_group mark would say it in the module, but
pytest-xdist 3.8 cannot group under pytest 9.2: it renames a node id that pytest 9 no longer
keeps in `_nodeid`.)"""


class OneWorkerScheduling(LoadScopeScheduling):
    """Each of ONE_WORKER's modules is one unit of work; every other test is a unit of its own."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if module in ONE_WORKER else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """With plain `-n` (pyproject's addopts), OneWorkerScheduling: the units of most tests go
    first, so ONE_WORKER's modules start at once; another `--dist` is pytest-xdist's own."""
    if config.getoption("dist") != "load":
        return None
    return OneWorkerScheduling(config, log)


def run(coroutine: Any) -> Any:
    """Run a coroutine from a synchronous test."""
    return asyncio.run(coroutine)


STALE_AFTER = 24 * 3600
"""Seconds after which a run's database left behind (the run was killed) is dropped by the next
run on the same server."""


class RunDatabases:
    """The databases of this test run, `<base>_<unix time>_<pid>_<purpose>` on POSTGRES_SERVER_URL's
    server, so that runs sharing a server never touch each other's data; dropped at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        parts = urlsplit(server_url)
        self.base = parts.path.lstrip("/") or "test"
        self.prefix = f"{self.base}_{int(time.time())}_{os.getpid()}"
        self.created: list[str] = []

    def url(self, database: str) -> str:
        return urlunsplit(urlsplit(self.server_url)._replace(path=f"/{database}"))

    async def _maintenance(self) -> Any:
        """A connection to the server: the URL's own database, else the ones every server has."""
        import asyncpg

        for database in dict.fromkeys((self.base, "postgres", "template1")):
            try:
                return await asyncpg.connect(self.url(database), timeout=5)
            except asyncpg.InvalidCatalogNameError:
                continue
        raise RuntimeError(f"no database to connect to on {self.server_url}")

    async def _drop(self, connection: Any, database: str) -> None:
        # Connections a killed server process left open would block a plain DROP (PG 13+).
        force = " WITH (FORCE)" if connection.get_server_version() >= (13,) else ""
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}"{force}')

    async def create(self, purpose: str) -> str:
        """A new empty database for `purpose` (a word); returns its URL."""
        database = f"{self.prefix}_{purpose}"
        connection = await self._maintenance()
        try:
            await self._drop_stale(connection)
            await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()
        self.created.append(database)
        return self.url(database)

    async def _drop_stale(self, connection: Any) -> None:
        """Drop what runs killed more than a day ago left: only names of our exact shape."""
        shape = re.compile(rf"{re.escape(self.base)}_(\d{{10}})_\d+_[a-z]+")
        names = await connection.fetch("SELECT datname FROM pg_database")
        for (name,) in names:
            found = shape.fullmatch(name)
            if found and int(found.group(1)) < time.time() - STALE_AFTER:
                with contextlib.suppress(Exception):  # another run may be dropping it too
                    await self._drop(connection, name)

    async def drop_all(self) -> None:
        if not self.created:
            return
        connection = await self._maintenance()
        try:
            for database in self.created:
                await self._drop(connection, database)
        finally:
            await connection.close()
        self.created.clear()


async def _run_postgres(url: str, sql: str) -> list[dict[str, Any]]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


def query(url: str, sql: str) -> list[dict[str, Any]]:
    """Run SQL straight against the test database (to look at or to age what the app stored)."""
    if not url.startswith("sqlite"):
        return run(_run_postgres(url, sql))  # type: ignore[no-any-return]
    with contextlib.closing(sqlite3.connect(urlsplit(url).path[1:], timeout=30)) as connection:
        connection.row_factory = sqlite3.Row
        rows = [dict(row) for row in connection.execute(sql).fetchall()]
        connection.commit()
    return rows


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[RunDatabases]:
    """This run's databases on the test server; every one is dropped when the run ends, passed
    or failed."""
    databases = RunDatabases(POSTGRES_SERVER_URL)
    try:
        yield databases
    finally:
        run(databases.drop_all())


@pytest.fixture(scope="session")
def new_postgres(postgres_databases: RunDatabases) -> Callable[[str], str]:
    """Creates an empty database of this run's own (or skips, or fails in CI, when the server
    is unavailable); returns its URL."""

    def create(purpose: str) -> str:
        try:
            url: str = run(postgres_databases.create(purpose))
        except (OSError, Exception) as exc:
            where = POSTGRES_SERVER_URL
            message = f"PostgreSQL at {where} unavailable: {type(exc).__name__}: {exc}"
            if REQUIRE_POSTGRES:
                pytest.fail(message)
            pytest.skip(message)
        return url

    return create


@pytest.fixture(scope="session")
def postgres_url(new_postgres: Callable[[str], str]) -> str:
    """This run's PostgreSQL database, migrated."""
    url = new_postgres("tests")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "bot.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def empty_postgres(postgres_url: str) -> str:
    """This run's PostgreSQL database, migrated, with every table empty."""
    query(postgres_url, f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "bot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("empty_postgres")
    return url


@pytest.fixture(scope="session")
def _telegram_api() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(TOKEN)
    with serve(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="session")
def _vk_api() -> Iterator[FakeVk]:
    fake = FakeVk(VK_TOKEN, VK_GROUP)
    with serve(fake.app()) as url:
        fake.url = url
        yield fake


@pytest.fixture
def fake_telegram(_telegram_api: FakeTelegram) -> FakeTelegram:
    """The fake Bot API, with nothing recorded yet (one server for the whole run)."""
    _telegram_api.reset()
    return _telegram_api


@pytest.fixture
def fake_vk(_vk_api: FakeVk) -> FakeVk:
    """The fake VK API, with nothing recorded yet (one server for the whole run)."""
    _vk_api.reset()
    return _vk_api


def make_settings(**values: Any) -> Settings:
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, fake_telegram: FakeTelegram, fake_vk: FakeVk) -> Settings:
    return make_settings(
        database_url=database_url,
        telegram_token=TOKEN,
        telegram_secret=SECRET,
        telegram_api_url=fake_telegram.url,
        telegram_bot_username=BOT_USERNAME,
        vk_token=VK_TOKEN,
        vk_group_id=VK_GROUP,
        vk_secret=VK_SECRET,
        vk_api_url=fake_vk.url,
        session_secret="test-session-secret",
        # No loop of its own in the tests' servers: what is due runs when a test says so (a
        # test of the loop turns it on, tests/test_runner.py).
        tick_seconds=0,
    )


BotFactory = Callable[..., httpx.Client]


@pytest.fixture
def start_bot(settings: Settings) -> Iterator[BotFactory]:
    """Start the app on loopback (settings and flow can be changed); returns an HTTP client."""
    stack: list[Any] = []

    def start(flow: Flow | None = None, **changes: Any) -> httpx.Client:
        app = create_app(make_settings(**{**settings.model_dump(), **changes}), flow=flow)
        server = serve(app)
        url = server.__enter__()
        client = httpx.Client(base_url=url, timeout=30)
        stack.append((server, client))
        return client

    yield start
    for server, client in reversed(stack):
        client.close()
        server.__exit__(None, None, None)


@pytest.fixture
def bot(start_bot: BotFactory) -> httpx.Client:
    return start_bot()


def telegram_update(
    update_id: int,
    text: str | None = "hello",
    *,
    user_id: int = 1001,
    chat_id: int | None = None,
    chat_type: str = "private",
    field: str = "message",
    **extra: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": 1_700_000_000,
        "chat": {"id": chat_id if chat_id is not None else user_id, "type": chat_type},
        "from": {"id": user_id, "is_bot": False, "first_name": "Ann", "username": "ann"},
        **extra,
    }
    if text is not None:
        message["text"] = text
    return {"update_id": update_id, field: message}


def post_telegram(client: httpx.Client, update: Any, secret: str | None = SECRET) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    # json.dumps escapes what UTF-8 cannot carry (lone surrogates), as a platform's JSON would.
    return client.post("/webhooks/telegram", content=json.dumps(update), headers=headers)


def vk_event(
    event_id: str,
    text: str | None = "hello",
    *,
    user_id: int = 3001,
    peer_id: int | None = None,
    kind: str = "message_new",
    old_shape: bool = False,
    **changes: Any,
) -> dict[str, Any]:
    """A Callback API event as VK sends it (API 5.103 and later unless `old_shape`)."""
    body: dict[str, Any]
    if kind in ("message_new", "message_edit"):
        message = {
            "id": 1,
            "date": 1_700_000_000,
            "from_id": user_id,
            "peer_id": peer_id if peer_id is not None else user_id,
            "text": text or "",
            "attachments": [],
        }
        new_shape = kind == "message_new" and not old_shape
        body = {"message": message, "client_info": {"keyboard": True}} if new_shape else message
    else:
        body = {"user_id": user_id}
    event = {
        "type": kind,
        "event_id": event_id,
        "v": "5.199",
        "group_id": VK_GROUP,
        "secret": VK_SECRET,
        "object": body,
    }
    return {**event, **changes}


def post_vk(client: httpx.Client, event: Any, **headers: str) -> httpx.Response:
    return client.post(
        "/webhooks/vk",
        content=json.dumps(event),
        headers={"Content-Type": "application/json", **headers},
    )


def say_web(client: httpx.Client, text: str) -> list[str]:
    response = client.post("/webhooks/web", json={"text": text})
    assert response.status_code == 200, response.text
    replies: list[str] = response.json()["texts"]
    return replies
