"""The database handle: lazy connection, and recovery when the server drops our connections."""

from __future__ import annotations

import httpx
import pytest

from portabot.settings import postgres_connection
from tests.conftest import BotFactory, post_telegram, query, run, say_web, telegram_update

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
    connection = postgres_connection(
        "postgresql://u@h:5432/db?ssl=require&max_size=2&statement_cache_size=0&application_name=x",
        pool_size=4,
        environ={},
    )
    assert connection.dsn == "postgresql://u@h:5432/db?application_name=x&sslmode=require"
    assert connection.pool == {"min_size": 1, "max_size": 2}
    assert connection.connect == {"statement_cache_size": 0}


async def _settings_seen_by_the_server(url: str) -> tuple[str, str, str]:
    from portabot.storage.database import Database, Query

    database = Database(url)
    try:
        async with database.transaction() as conn:
            row = await conn.fetch_one(
                Query(
                    "SELECT current_setting('application_name') AS a,"
                    " current_setting('statement_timeout') AS t,"
                    " current_setting('search_path') AS p"
                )
            )
            assert row is not None
            return row["a"], row["t"], row["p"]
    finally:
        await database.close()


def test_the_url_options_reach_the_pool_and_the_server(postgres_url: str) -> None:
    """Our pool's keys go to the pool, libpq's own are handled, the rest are server settings."""
    url = (
        f"{postgres_url}?max_size=1&statement_cache_size=0&fallback_application_name=bot"
        "&statement_timeout=5s&search_path=public&client_encoding=utf-8&keepalives=1"
        "&channel_binding=prefer"
    )
    assert run(_settings_seen_by_the_server(url)) == ("bot", "5s", "public")


def test_a_transaction_cancelled_while_it_begins_gives_its_connection_back(
    postgres_url: str,
) -> None:
    """A server's shutdown cancels the work in hand; a cancelled BEGIN must not keep its pooled
    connection, or closing the pool waits for it for ever (asyncpg's "unreleased connections")."""
    import asyncio
    from urllib.parse import urlsplit

    from portabot.storage.database import Database, Query
    from tests.proxy import CuttableProxy

    parts = urlsplit(postgres_url)
    with CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432).running() as proxy:
        through = postgres_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")

        async def scenario() -> None:
            db = Database(through, pool_size=1)
            async with db.transaction() as conn:  # the pool's one connection, made and warm
                await conn.fetch_val(Query("SELECT 1"))
            with proxy.holding():
                beginning = asyncio.ensure_future(db.transaction().__aenter__())
                await asyncio.to_thread(proxy.wait_held)  # BEGIN sent, its answer held back
                beginning.cancel()
            with pytest.raises(asyncio.CancelledError):  # once asyncpg's cancel request is through
                await beginning
            try:
                async with asyncio.timeout(20):  # kept by the cancelled BEGIN, it never comes
                    async with db.transaction() as conn:  # the pool's one connection again
                        assert await conn.fetch_val(Query("SELECT 2")) == 2
            finally:
                await asyncio.wait_for(db.close(), 20)

        asyncio.run(scenario())


def test_an_answer_lost_after_the_commit_is_recovered_by_the_statement_sent_again(
    start_bot: BotFactory, empty_postgres: str
) -> None:
    """An ordinary update is one statement on a connection outside a transaction, sent again on
    a new connection when the first is lost. Lost after PostgreSQL committed it, the statement
    finds its update recorded at its own moment: the reply it computed is the answer, not the
    silence owed to a re-delivery."""
    import threading
    from urllib.parse import urlsplit

    from tests.proxy import CuttableProxy

    def me(update_id: int) -> list[str]:
        response = post_telegram(bot, telegram_update(update_id, "/me", user_id=4242))
        assert response.status_code == 200
        return [response.json()["text"]] if response.content else []

    parts = urlsplit(empty_postgres)
    with CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432).running() as proxy:
        through = empty_postgres.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
        bot = start_bot(database_url=through, database_pool_size=1)
        assert me(1) == ["Linked platforms: telegram."]  # first contact: remembered
        # In one statement, which the pool's one connection prepares here: what the proxy
        # holds next is that statement's own answer, sent once it has committed.
        assert me(2) == ["Linked platforms: telegram."]
        answered: list[list[str]] = []
        with proxy.holding("answers"):
            asking = threading.Thread(target=lambda: answered.append(me(3)))
            asking.start()
            proxy.wait_held()  # committed; the answer will not arrive on this connection
            proxy.drop()
        asking.join(60)
        assert answered == [["Linked platforms: telegram."]]
        counted = "SELECT count(*) AS n FROM updates WHERE platform = 'telegram'"
        [row] = query(empty_postgres, counted)
        assert row["n"] == 3
