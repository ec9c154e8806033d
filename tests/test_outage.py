"""A database outage mid-load: 503 (never a 200 for an update not stored), the server stays up,
/healthz says so, and once the database is back every re-delivered update is processed once."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from portabot.conversation.engine import Context, Flow, State
from portabot.messages import Message
from tests.conftest import BotFactory, post_telegram, post_vk, query, telegram_update, vk_event
from tests.proxy import CuttableProxy


class Counting(State):
    name = "counting"

    async def handle(self, ctx: Context, message: Message) -> None:
        ctx.data["count"] = ctx.data.get("count", 0) + 1
        ctx.reply(f"message {ctx.data['count']}")
        return None


@pytest.mark.parametrize("platform", ["telegram", "vk"])
def test_an_outage_loses_nothing_and_does_nothing_twice(
    start_bot: BotFactory, empty_postgres: str, platform: str
) -> None:
    def deliver(update_id: int) -> httpx.Response:
        if platform == "vk":
            return post_vk(bot, vk_event(f"e{update_id}", "hi", user_id=7))
        return post_telegram(bot, telegram_update(update_id, "hi", user_id=7))

    parts = urlsplit(empty_postgres)
    with CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432).running() as proxy:
        url = empty_postgres.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
        bot = start_bot(database_url=url, flow=Flow([Counting()], initial="counting"))
        answered: dict[int, int] = {}
        for update_id in range(1, 31):
            if update_id == 11:
                proxy.cut()
                assert bot.get("/healthz").status_code == 503
            if update_id == 21:
                proxy.restore()
            answered[update_id] = deliver(update_id).status_code
        assert set(answered.values()) <= {200, 503}
        failed = [u for u, status in answered.items() if status != 200]
        assert failed and all(11 <= u <= 20 for u in failed)
        stored = {
            int(r["update_id"].lstrip("e"))
            for r in query(empty_postgres, "SELECT update_id FROM updates")
        }
        assert stored == {u for u, status in answered.items() if status == 200}
        # The database is back without a restart; the platform delivers the failed ones again.
        assert bot.get("/healthz").status_code == 200
        for update_id in failed:
            assert deliver(update_id).status_code == 200
        for update_id in range(1, 31):  # and, say, everything once more: all skipped
            assert deliver(update_id).status_code == 200
    [person] = query(empty_postgres, "SELECT data FROM people")
    assert '"count":30' in person["data"]
    assert len(query(empty_postgres, "SELECT update_id FROM updates")) == 30


@pytest.fixture(autouse=True)
def _postgres_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("an outage of a database server")
