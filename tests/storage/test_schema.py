"""A server checks the schema on first use: a fresh SQLite file is migrated by the app itself, an
unmigrated PostgreSQL database is reported as such (not as an OperationalError)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from portabot.app import create_app
from portabot.storage.migrate import head_revision, upgrade
from portabot.storage.schema import NOT_MIGRATED, SCHEMA_REVISION
from portabot.testing.fakes import serve
from tests.conftest import make_settings, query, say_web


@contextmanager
def app_on(url: str) -> Iterator[httpx.Client]:
    """The app on `url`'s database, as `create_app` makes it, with a client."""
    with (
        serve(create_app(make_settings(database_url=url))) as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        yield client


def test_the_revision_servers_expect_is_the_newest_migration() -> None:
    assert head_revision() == SCHEMA_REVISION


def test_create_app_on_a_fresh_sqlite_file_needs_no_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with app_on(url) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert say_web(client, "/me") == ["Linked platforms: web."]
    assert query(url, "SELECT version_num FROM alembic_version") == [
        {"version_num": SCHEMA_REVISION}
    ]


def test_workers_starting_on_one_fresh_sqlite_file_migrate_it_once_between_them(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with ThreadPoolExecutor(4) as pool:
        revisions = list(pool.map(lambda _: upgrade(url), range(4)))
    assert revisions == [SCHEMA_REVISION] * 4
    assert query(url, "SELECT count(*) AS n FROM alembic_version") == [{"n": 1}]


def test_an_unmigrated_postgresql_database_is_reported_until_it_is_migrated(
    new_postgres: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    url = new_postgres("unmigrated")
    with app_on(url) as client, caplog.at_level(logging.ERROR, logger="portabot"):
        for _ in range(2):
            answer = client.post("/webhooks/web", json={"text": "hello"})
            assert answer.status_code == 503
            assert answer.json() == {"error": NOT_MIGRATED}
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["error"] == NOT_MIGRATED
        said = [r.getMessage() for r in caplog.records if r.name.startswith("portabot")]
        assert said == [NOT_MIGRATED]  # one line, no traceback
        upgrade(url)
        assert say_web(client, "/me") == ["Linked platforms: web."]
        assert client.get("/healthz").status_code == 200
