"""The database handle: lazy connection, and recovery when the server drops our connections."""

from __future__ import annotations

import httpx
import pytest

from core.storage.database import pool_options
from tests.conftest import BotFactory, query, say_web

TERMINATE_OTHERS = (
    "SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.fixture
def postgres_bot(start_bot: BotFactory, database_url: str) -> httpx.Client:
    if database_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL server drops connections; a SQLite file does not")
    return start_bot()


def test_dropped_connections_are_replaced_without_a_failed_update(
    postgres_bot: httpx.Client, database_url: str
) -> None:
    assert say_web(postgres_bot, "/me") == ["Linked platforms: web."]
    # What a server restart, or a Lambda container thawed after its socket died, looks like.
    assert query(database_url, TERMINATE_OTHERS)
    assert say_web(postgres_bot, "/me") == ["Linked platforms: web."]
    assert postgres_bot.get("/healthz").status_code == 200


def test_the_database_is_not_touched_before_a_request_needs_it(start_bot: BotFactory) -> None:
    bot = start_bot(database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    assert bot.get("/").status_code == 200  # the home page needs no database


def test_pool_options_come_out_of_the_url() -> None:
    dsn, options = pool_options(
        "postgresql://u@h:5432/db?ssl=require&max_size=2&statement_cache_size=0&application_name=x",
        4,
    )
    assert dsn == "postgresql://u@h:5432/db?application_name=x"
    assert options == {"min_size": 1, "max_size": 2, "ssl": "require", "statement_cache_size": 0}
