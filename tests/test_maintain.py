"""`portabot maintain` keeps the tables to their retention window: a backlog of old update ids,
link codes and sent replies goes, what is recent stays, and what is due in the outbox is sent.
Two runs at once on PostgreSQL: one works, the other says the lock is held."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from portabot.storage.purge import BATCH, LOCK_KEY
from portabot.testing.fakes import FakeTelegram
from tests.conftest import TOKEN, BotFactory, query, say_web
from tests.test_cli import PORTABOT, environment, portabot

DAY = 86_400


@dataclass(frozen=True)
class Backlog:
    """How many rows of each kind `fill` wrote."""

    old_updates: int = BATCH * 2 + 500  # more than one batch
    recent_updates: int = 300
    spent_codes: int = 120  # used, or expired more than a day ago
    fresh_codes: int = 30  # live, or expired within the day
    old_sent: int = 2_000
    recent_sent: int = 100
    old_given_up: int = 40  # more than 30 days ago
    recent_given_up: int = 25
    due: int = 3
    old_failures: int = 7  # the flow last failed on them more than 30 days ago
    recent_failures: int = 2
    old_arrivals: int = 50  # noted for ORDER_WINDOW_MS more than 7 days ago
    old_inline: int = 30  # replies kept for a re-delivery more than a day ago
    recent_inline: int = 4
    idle_visitors: int = 60  # web-only people last written more than 30 days ago
    recent_visitors: int = 9  # web-only, written within 30 days
    idle_linked: int = 5  # idle more than 30 days, but with a Telegram account linked too
    old_limits: int = 70  # limit counters whose window (at most an hour) has ended
    recent_limits: int = 3
    idle_paces: int = 45  # send schedules (one a chat) whose last send was long ago
    recent_paces: int = 2
    old_web_updates: int = 40  # the web chat's, received more than a day ago
    recent_web_updates: int = 6
    old_inbox: int = 11  # web inbox messages no page collected for more than 30 days
    recent_inbox: int = 4
    forgotten_inbox: int = 3  # recent, but for an idle visitor forgotten in this run


def rows(url: str, count: int, into: str, select: str) -> None:
    """Insert `count` rows, numbered by `i` from 1, in one statement."""
    query(
        url,
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
        f"INSERT INTO {into} SELECT {select} FROM n",
    )


def fill(url: str, backlog: Backlog, now: float) -> None:
    """As if the bot had run for weeks without maintenance."""
    old, recent = now - 8 * DAY, now - 3600
    updates = "updates (platform, update_id, received_at)"
    rows(url, backlog.old_updates, updates, f"'telegram', 'old-' || i, {old} - i")
    rows(url, backlog.recent_updates, updates, f"'vk', 'new-' || i, {recent} + i")
    query(url, "INSERT INTO people (data, created_at, updated_at) VALUES ('{}', 0, 0)")
    accounts = "accounts (platform, user_id, person_id, chat_id, created_at)"
    query(url, f"INSERT INTO {accounts} SELECT 'telegram', '5', max(id), '5', 0 FROM people")
    codes = "link_codes (code, person_id, platform, created_at, expires_at, used_at)"
    person = "(SELECT max(id) FROM people), 'web'"
    half = backlog.spent_codes // 2
    rows(url, half, codes, f"'used-' || i, {person}, {recent}, {now} + 600, {recent}")
    rows(url, half, codes, f"'gone-' || i, {person}, {old}, {now} - {DAY} - i, NULL")
    half = backlog.fresh_codes // 2
    rows(url, half, codes, f"'live-' || i, {person}, {now}, {now} + 600, NULL")
    rows(url, half, codes, f"'late-' || i, {person}, {recent}, {now} - 60, NULL")
    outbox = "outbox (platform, chat_id, text, key, created_at, sent_at, attempts, gave_up_at)"
    rows(url, backlog.old_sent, outbox, f"'telegram', '5', 'old', i, {old}, {old}, 1, NULL")
    rows(url, backlog.recent_sent, outbox, f"'telegram', '5', 'new', i, {now}, {now}, 1, NULL")
    given_up = f"'telegram', '5', 'refused', i, {old}, NULL, 1"
    rows(url, backlog.old_given_up, outbox, f"{given_up}, {now} - 31 * {DAY}")
    rows(url, backlog.recent_given_up, outbox, f"{given_up}, {old}")
    rows(url, backlog.due, outbox, f"'telegram', '5', 'due ' || i, i, {now}, NULL, 0, NULL")
    failed = "failed_updates (platform, update_id, attempts, error, first_at, last_at)"
    rows(url, backlog.old_failures, failed, f"'vk', 'f' || i, 3, 'E', {old}, {now} - 31 * {DAY}")
    rows(url, backlog.recent_failures, failed, f"'vk', 'g' || i, 1, 'E', {old}, {old}")
    arrivals = "arrivals (platform, update_id, user_id, sequence, arrived_at)"
    rows(url, backlog.old_arrivals, arrivals, f"'telegram', 'old-' || i, '5', i, {old}")
    inline = "inline_replies (platform, update_id, replies, replied_at)"
    rows(url, backlog.old_inline, inline, f"'telegram', 'old-' || i, '[]', {now} - {DAY} - i")
    rows(url, backlog.recent_inline, inline, f"'vk', 'new-' || i, '[]', {recent}")
    visitors = [
        ("idle", backlog.idle_visitors, now - 31 * DAY, False),
        ("recent", backlog.recent_visitors, now - 29 * DAY, False),
        ("linked", backlog.idle_linked, now - 31 * DAY, True),
    ]
    for name, count, seen, linked in visitors:
        people = "people (state, data, created_at, updated_at)"
        rows(url, count, people, f"'{name}-' || i, '{{}}', {seen}, {seen}")
        person = f"(SELECT id FROM people WHERE state = '{name}-' || i)"
        rows(url, count, accounts, f"'web', '{name}-' || i, {person}, 'c', {seen}")
        if linked:
            rows(url, count, accounts, f"'vk', '{name}-' || i, {person}, 'c', {seen}")
    # A code of an idle visitor goes with them.
    idle = f"SELECT 'idle-code', id, 'web', {now}, {now} + 600, NULL FROM people"
    idle += " WHERE state = 'idle-1'"
    query(url, f"INSERT INTO {codes} {idle}")
    limits = "limits (key, window_start, count)"
    rows(url, backlog.old_limits, limits, f"'web:10.0.0.' || i, {now} - 3600 - i, 3")
    rows(url, backlog.recent_limits, limits, f"'web-new:10.0.1.' || i, {now} - 3000, 1")
    pace = "pace (scope, next_at, step)"
    rows(url, backlog.idle_paces, pace, f"'telegram:1:' || i, {now} - 3600 - i, 1")
    rows(url, backlog.recent_paces, pace, f"'telegram:2:' || i, {now} - 60, 1")
    web = f"'web', 'web-old-' || i, {now} - {DAY} - i"
    rows(url, backlog.old_web_updates, updates, web)
    rows(url, backlog.recent_web_updates, updates, f"'web', 'web-new-' || i, {now} - 3600")
    inbox = "inbox (user_id, text, reply, key, created_at)"
    rows(url, backlog.old_inbox, inbox, f"'recent-1', 'old', NULL, 'o' || i, {now} - 31 * {DAY}")
    rows(url, backlog.recent_inbox, inbox, f"'recent-1', 'new', NULL, 'n' || i, {recent}")
    rows(url, backlog.forgotten_inbox, inbox, f"'idle-1', 'gone', NULL, 'g' || i, {recent}")


def received(url: str, count: int, ago: str) -> None:
    """`count` update ids, the i-th received `ago` seconds ago (an SQL expression of i)."""
    updates = "updates (platform, update_id, received_at)"
    rows(url, count, updates, f"'telegram', 'u' || i, {time.time()} - ({ago})")


def counts(url: str) -> dict[str, int]:
    return {
        table: query(url, f"SELECT count(*) AS n FROM {table}")[0]["n"]
        for table in (
            "updates",
            "link_codes",
            "outbox",
            "failed_updates",
            "arrivals",
            "inline_replies",
            "people",
            "accounts",
            "limits",
            "inbox",
            "pace",
        )
    }


def maintain(tmp_path: Path, url: str, fake: FakeTelegram, *args: str) -> str:
    result = portabot(
        tmp_path,
        "maintain",
        *args,
        DATABASE_URL=url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake.url,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_maintain_brings_the_tables_back_to_the_retention_window(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram
) -> None:
    b = Backlog()
    fill(database_url, b, time.time())
    assert maintain(tmp_path, database_url, fake_telegram).splitlines() == [
        f"updates: {b.old_updates} deleted (received more than 7 days ago)",
        f"outbox: {b.old_sent + b.old_given_up} deleted (sent more than 7 days ago, "
        "or given up more than 30 days ago)",
        f"failed updates: {b.old_failures} deleted (last failed more than 30 days ago)",
        f"inline replies: {b.old_inline} deleted (kept a day, while a platform may re-deliver)",
        f"web chat update ids: {b.old_web_updates} deleted (received more than a day ago)",
        f"web visitors: {b.idle_visitors} deleted (web only, idle more than 30 days)",
        f"web inbox: {b.old_inbox + b.forgotten_inbox} deleted (not collected within 30 days, "
        "or its visitor forgotten)",
        f"limit counters: {b.old_limits} deleted (their window has ended)",
        f"send schedules: {b.idle_paces} deleted (idle more than 10 minutes)",
        f"link codes: {b.spent_codes} deleted (used, or expired more than a day ago)",
        f"outbox: sent {b.due}, failed 0; 0 waiting for a later try",
    ]
    assert counts(database_url) == {
        "updates": b.recent_updates + b.recent_web_updates,
        "link_codes": b.fresh_codes,
        "outbox": b.recent_sent + b.recent_given_up + b.due,
        "failed_updates": b.recent_failures,
        "arrivals": 0,
        "inline_replies": b.recent_inline,
        "people": 1 + b.recent_visitors + b.idle_linked,
        "accounts": 1 + b.recent_visitors + 2 * b.idle_linked,
        "limits": b.recent_limits,
        "inbox": b.recent_inbox,
        "pace": b.recent_paces + 2,  # and the bot's and chat 5's, which the due replies took
    }
    codes = {row["code"] for row in query(database_url, "SELECT code FROM link_codes")}
    assert "idle-code" not in codes
    assert [p["text"] for p in fake_telegram.sent()] == [f"due {i}" for i in range(1, b.due + 1)]
    # Idempotent: at once again, nothing is left to do.
    again = maintain(tmp_path, database_url, fake_telegram)
    assert again.count(": 0 deleted") == 10 and "sent 0, failed 0" in again
    assert len(fake_telegram.sent()) == b.due


def test_a_shorter_window_keeps_less(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram
) -> None:
    received(database_url, 50, "i * 3600 - 1800")  # 0.5, 1.5, ... 49.5 hours ago
    out = maintain(tmp_path, database_url, fake_telegram, "--keep-updates-days", "1")
    assert "updates: 26 deleted (received more than 1 day ago)" in out
    assert counts(database_url)["updates"] == 24


def test_the_window_comes_from_the_environment_and_is_checked(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram
) -> None:
    received(database_url, 5, f"i * {DAY}")
    env = {"DATABASE_URL": database_url, "KEEP_UPDATES_DAYS": "2.5"}
    result = portabot(tmp_path, "maintain", **env)
    assert "updates: 3 deleted (received more than 2.5 days ago)" in result.stdout
    for bad in (["--keep-updates-days", "0.5"], ["--keep-updates-days", "soon"]):
        refused = portabot(tmp_path, "maintain", *bad, **env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "--keep-updates-days" in refused.stderr
    refused = portabot(tmp_path, "maintain", **{**env, "KEEP_UPDATES_DAYS": "0"})
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "KEEP_UPDATES_DAYS" in refused.stderr


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://postgres:pw-do-not-show@127.0.0.1:9/x"
    result = portabot(tmp_path, "maintain", DATABASE_URL=url)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("portabot: cannot maintain postgresql://postgres:********@")


@pytest.fixture
def lock_held_elsewhere(empty_postgres: str) -> Iterator[subprocess.Popen[str]]:
    """Another maintain run, as PostgreSQL sees it: a session holding the advisory lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, empty_postgres, str(LOCK_KEY)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    yield holder
    holder.communicate("", timeout=30)


HOLD_LOCK = """
import asyncio, sys
import asyncpg

async def main():
    connection = await asyncpg.connect(sys.argv[1])
    await connection.execute("SELECT pg_advisory_lock($1)", int(sys.argv[2]))
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await connection.close()

asyncio.run(main())
"""


def test_a_run_while_another_holds_the_lock_does_nothing(
    tmp_path: Path,
    empty_postgres: str,
    fake_telegram: FakeTelegram,
    lock_held_elsewhere: subprocess.Popen[str],
) -> None:
    fill(empty_postgres, Backlog(old_updates=10), time.time())
    before = counts(empty_postgres)
    out = maintain(tmp_path, empty_postgres, fake_telegram)
    assert out == "another maintain run holds the lock; nothing done\n"
    assert counts(empty_postgres) == before and fake_telegram.sent() == []


def test_two_runs_at_once_do_the_work_once(
    tmp_path: Path, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    b = Backlog(old_updates=BATCH * 5)
    fill(empty_postgres, b, time.time())
    env = environment(
        DATABASE_URL=empty_postgres, TELEGRAM_TOKEN=TOKEN, TELEGRAM_API_URL=fake_telegram.url
    )
    runs = [
        subprocess.Popen(
            [PORTABOT, "maintain"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    worked = [out for out in outputs if out.startswith(f"updates: {b.old_updates} deleted")]
    assert len(worked) == 1, outputs
    [other] = [out for out in outputs if out not in worked]
    # Locked out, or (when the runs did not overlap) after the first: nothing left to do, in
    # every purge line (ours and the features'), whatever their number; the last one delivers.
    purges = other.splitlines()[:-1]
    assert other == "another maintain run holds the lock; nothing done\n" or (
        len(purges) >= 8 and all(": 0 deleted" in line for line in purges)
    ), outputs
    assert len(fake_telegram.sent()) == b.due
    assert counts(empty_postgres)["updates"] == b.recent_updates + b.recent_web_updates


def test_the_web_app_does_not_load_maintenance_or_polling() -> None:
    code = "import sys, portabot.app; print(sorted(m for m in sys.modules if 'portabot.' in m))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for module in ("portabot.maintenance", "portabot.polling", "portabot.storage.purge"):
        assert f"'{module}'" not in loaded


def test_a_web_visitor_who_keeps_chatting_is_kept_and_one_who_left_is_forgotten(
    tmp_path: Path, start_bot: BotFactory, database_url: str, fake_telegram: FakeTelegram
) -> None:
    stays = start_bot()
    say_web(stays, "/bind")
    with httpx.Client(base_url=stays.base_url) as left:
        say_web(left, "hello")
    query(database_url, f"UPDATE people SET updated_at = updated_at - 31 * {DAY}")
    # A message that changes nothing still marks the person as seen (at most once a day).
    assert say_web(stays, "hello")[0].startswith("Waiting for /in ")
    out = maintain(tmp_path, database_url, fake_telegram)
    assert "web visitors: 1 deleted (web only, idle more than 30 days)" in out
    assert say_web(stays, "hello")[0].startswith("Waiting for /in ")  # the same person
    assert len(query(database_url, "SELECT user_id FROM accounts")) == 1
    assert len(query(database_url, "SELECT code FROM link_codes")) == 1
