"""One sender's updates that reach the bot out of order apply in Telegram's update_id order when
ORDER_WINDOW_MS is set: over gunicorn's four workers on PostgreSQL, and in one process on both
databases. Each update's inline reply tells which count it got."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from examples.counter import flow
from portabot.testing.fakes import FakeTelegram
from tests.conftest import BotFactory, post_telegram, telegram_update
from tests.reliability.load import COUNTER_FLOW, gunicorn

UPDATES = 12
FIRST_ID = 500_000
WINDOW_MS = 2_000
"""Far longer than the burst takes to arrive (UPDATES × JITTER), so that every update of it is
still in the window on a machine busy with other tests (pytest-xdist runs several at once)."""
JITTER = 0.02
"""Seconds between two sends: the whole burst arrives within the window."""


def shuffled_ids(seed: int) -> list[int]:
    ids = list(range(FIRST_ID, FIRST_ID + UPDATES))
    random.Random(seed).shuffle(ids)
    assert ids != sorted(ids)
    return ids


def send_out_of_order(client_for: Callable[[], httpx.Client], ids: list[int]) -> dict[int, int]:
    """Post the updates in the given order, JITTER apart, each on its own connection without
    waiting for the earlier ones' answers; returns the count each one's reply announced."""
    start = time.monotonic()

    def send(position: int, update_id: int) -> tuple[int, int]:
        time.sleep(max(0.0, start + position * JITTER - time.monotonic()))
        with client_for() as client:
            response = post_telegram(client, telegram_update(update_id, f"m{update_id}"))
        assert response.status_code == 200, response.text
        found = re.fullmatch(r"That was message (\d+)\.", response.json()["text"])
        assert found is not None, response.text
        return update_id, int(found.group(1))

    with ThreadPoolExecutor(len(ids)) as pool:
        return dict(pool.map(send, range(len(ids)), ids))


def assert_in_update_id_order(counts: dict[int, int]) -> None:
    assert [counts[update_id] for update_id in sorted(counts)] == list(range(1, len(counts) + 1))


def test_out_of_order_arrivals_apply_in_update_id_order_over_four_workers(
    empty_postgres: str, fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    with gunicorn(
        empty_postgres,
        fake_telegram.url,
        workers=4,
        flow=COUNTER_FLOW,
        log=tmp_path / "gunicorn.log",
        ORDER_WINDOW_MS=str(WINDOW_MS),
    ) as server:
        counts = send_out_of_order(lambda: httpx.Client(base_url=server.url), shuffled_ids(1))
    assert_in_update_id_order(counts)
    assert "Traceback" not in server.output()


def test_out_of_order_arrivals_apply_in_update_id_order_in_one_process(
    start_bot: BotFactory,
) -> None:
    bot = start_bot(flow, order_window_ms=WINDOW_MS)
    counts = send_out_of_order(lambda: httpx.Client(base_url=bot.base_url), shuffled_ids(2))
    assert_in_update_id_order(counts)
