"""`portabot broadcast` (issue 15): one message to every person, or a flow's audience, on every
platform each linked, paced by the platforms' limits however many runs there are, once per key:
a run stopped part way (by Ctrl-C, or by a platform's long pause) is finished by the next."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from portabot import Flow
from portabot.conversation.routing import FlowError
from portabot.testing.fakes import FakeTelegram, FakeVk, TelegramLimits
from tests.conftest import SECRET, TOKEN, VK_GROUP, VK_SECRET, VK_TOKEN, query
from tests.test_cli import PORTABOT, environment, portabot
from tests.test_notify import Idle, telegram_texts, vk_texts

FIRST_CHAT = 100_000


def seed(url: str, count: int, data: str = "'{}'") -> None:
    """`count` people with a Telegram account each (chat FIRST_CHAT + their id), as if each had
    written once; `data` is an SQL expression of i (1 to count)."""
    query(
        url,
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
        "INSERT INTO people (state, data, created_at, updated_at)"
        f" SELECT NULL, {data}, 0, 0 FROM n",
    )
    chat = f"CAST({FIRST_CHAT} + id AS VARCHAR)"
    query(
        url,
        "INSERT INTO accounts (platform, user_id, person_id, chat_id, created_at)"
        f" SELECT 'telegram', {chat}, id, {chat}, 0 FROM people",
    )


def chats(url: str) -> list[str]:
    rows = query(url, "SELECT chat_id FROM accounts WHERE platform = 'telegram'")
    return sorted(str(row["chat_id"]) for row in rows)


def reached(fake: FakeTelegram) -> Counter[str]:
    """How many messages each chat got."""
    return Counter(str(payload["chat_id"]) for payload in fake.sent())


def variables(
    url: str, fake_telegram: FakeTelegram, fake_vk: FakeVk | None = None
) -> dict[str, str]:
    values = {
        "DATABASE_URL": url,
        "TELEGRAM_TOKEN": TOKEN,
        "TELEGRAM_SECRET": SECRET,
        "TELEGRAM_API_URL": fake_telegram.url,
    }
    if fake_vk is not None:
        values |= {
            "VK_TOKEN": VK_TOKEN,
            "VK_GROUP_ID": str(VK_GROUP),
            "VK_SECRET": VK_SECRET,
            "VK_API_URL": fake_vk.url,
        }
    return values


def start(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PORTABOT, "broadcast", *args],
        cwd=tmp_path,
        env=environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_broadcast_to_2000_people_on_four_workers_sees_no_429(
    empty_postgres: str, fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    """The issue's test: four runs of one broadcast at once (as on four machines), against a
    Telegram that answers 429 beyond its limits."""
    seed(empty_postgres, 2000)
    fake_telegram.limits = TelegramLimits()
    env = variables(empty_postgres, fake_telegram)
    runs = [start(tmp_path, env, "Spring sale!", "--id", "sale-2026") for _ in range(4)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, [err for _, err in outputs]
    assert fake_telegram.throttled == []
    assert reached(fake_telegram) == Counter(chats(empty_postgres))  # everyone, once
    assert fake_telegram.fastest_second() < 30
    stored = [int(out.split("(")[1].split(" stored now")[0]) for out, _ in outputs]
    assert sum(stored) == 2000  # each person stored by one of the runs
    assert all("2000 of 2000 sent" in out for out, _ in outputs)


def test_a_broadcast_reaches_every_linked_platform_once_per_key(
    database_url: str, fake_telegram: FakeTelegram, fake_vk: FakeVk, tmp_path: Path
) -> None:
    seed(database_url, 5)
    query(database_url, "INSERT INTO people (data, created_at, updated_at) VALUES ('{}', 0, 0)")
    ann = "(SELECT max(id) FROM people)"
    accounts = "accounts (platform, user_id, person_id, chat_id, created_at)"
    for platform, user in (("telegram", "1001"), ("vk", "3001"), ("web", "visitor-1")):
        query(database_url, f"INSERT INTO {accounts} SELECT '{platform}', '{user}', {ann}, '-5', 0")
    env = variables(database_url, fake_telegram, fake_vk)

    first = portabot(tmp_path, "broadcast", "We moved!", "--id", "moved", **env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        "broadcast moved: 6 people (6 stored now, 0 before); 7 of 7 sent through the APIs;"
        " 1 put in web inboxes\n"
    )
    assert telegram_texts(fake_telegram, 1001) == ["We moved!"]  # the private chat, not -5
    assert vk_texts(fake_vk, 3001) == ["We moved!"]
    assert len(fake_telegram.sent()) == 6
    assert [row["key"] for row in query(database_url, "SELECT key FROM inbox")] == [
        "broadcast:moved:6:web"
    ]

    again = portabot(tmp_path, "broadcast", "We moved!", "--id", "moved", **env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("broadcast moved: 6 people (0 stored now, 6 before)")
    assert len(fake_telegram.sent()) == 6 and len(fake_vk.sent()) == 1

    only_vk = portabot(tmp_path, "broadcast", "VK only", "--platforms", "vk", **env)
    assert only_vk.returncode == 0, only_vk.stderr
    assert vk_texts(fake_vk, 3001) == ["We moved!", "VK only"] and len(fake_telegram.sent()) == 6
    assert "broadcast --id " in only_vk.stderr  # a fresh key, printed so it can be resumed


def test_a_broadcast_stopped_part_way_is_finished_by_a_second_run(
    database_url: str, fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    seed(database_url, 80)
    fake_telegram.limits = TelegramLimits()
    env = variables(database_url, fake_telegram)
    first = start(tmp_path, env, "News", "--id", "news")
    deadline = time.monotonic() + 60
    while len(fake_telegram.sent()) < 10:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    first.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "stopped; run again with --id news" in err and "Traceback" not in err
    sent_before = len(fake_telegram.sent())
    assert 10 <= sent_before < 80 and "not sent yet" in out

    second = portabot(tmp_path, "broadcast", "News", "--id", "news", **env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("broadcast news: 80 people (0 stored now, 80 before)")
    assert reached(fake_telegram) == Counter(chats(database_url))  # the rest, and none twice
    assert fake_telegram.throttled == []


def test_a_platforms_long_pause_ends_the_run_and_a_later_one_finishes(
    database_url: str, fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    """Telegram's 429 asks for an hour: every run would wait; this one says when the rest is
    due and ends. After the hour (moved on here), a second run sends the rest, once."""
    seed(database_url, 30)
    fake_telegram.fail_next(status=429, retry_after=3600)
    env = variables(database_url, fake_telegram)
    first = portabot(tmp_path, "broadcast", "Hello", "--id", "hello", **env)
    assert first.returncode == 0, first.stderr
    assert (
        "30 not sent yet, due from" in first.stdout and "a platform asked to wait" in first.stdout
    )
    assert fake_telegram.sent() == []
    query(database_url, "UPDATE pace SET next_at = 0")
    query(database_url, "UPDATE outbox SET due_at = NULL WHERE sent_at IS NULL")

    second = portabot(tmp_path, "broadcast", "Hello", "--id", "hello", **env)
    assert second.returncode == 0, second.stderr
    assert "30 of 30 sent" in second.stdout
    assert reached(fake_telegram) == Counter(chats(database_url))


AUDIENCE_FLOW = """
from portabot import Flow, State


class Idle(State):
    def handle(self, ctx, message):
        ctx.reply("hi")


def subscribers(state, data):
    return data.get("subscribed", False)


flow = Flow([Idle], audiences={"subscribers": subscribers})


@flow.audience("first-ten")
def first_ten(state, data):
    return data["n"] <= 10
"""


def test_an_audience_of_the_flow_chooses_whom_a_broadcast_reaches(
    database_url: str, fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    (tmp_path / "shop.py").write_text(AUDIENCE_FLOW)
    seed(
        database_url,
        30,
        """'{"n": ' || i || ', "subscribed": '"""
        """ || (CASE WHEN i % 3 = 0 THEN 'true' ELSE 'false' END) || '}'""",
    )
    env = {**variables(database_url, fake_telegram), "BOT_FLOW": "shop:flow"}
    result = portabot(tmp_path, "broadcast", "For subscribers", "--to", "subscribers", **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("broadcast ") and ": 10 people (10 stored now" in result.stdout
    people = query(database_url, "SELECT id, data FROM people ORDER BY id")
    wanted = {str(FIRST_CHAT + p["id"]) for p in people if '"subscribed": true' in p["data"]}
    assert set(reached(fake_telegram)) == wanted

    unknown = portabot(tmp_path, "broadcast", "x", "--to", "vip", **env)
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "portabot: broadcast: no audience 'vip' in the flow"
        " (its audiences: first-ten, subscribers)\n"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["   "], "broadcast: the text is empty"),
        (["x" * 4097], "broadcast: the text is 4097 characters; at most 4096"),
        (["hi", "--id", "a key"], "broadcast: --id is 1 to 40 characters without spaces"),
        (["hi", "--id", "k" * 41], "broadcast: --id is 1 to 40 characters without spaces"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path: Path, args: list[str], says: str) -> None:
    result = portabot(tmp_path, "broadcast", *args, DATABASE_URL="sqlite:///never.db")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"portabot: {says}")
    assert not (tmp_path / "never.db").exists()


def test_a_database_that_is_down_is_one_line_and_status_1(tmp_path: Path) -> None:
    down = "postgresql://portabot:secret@127.0.0.1:9/bot"
    result = portabot(tmp_path, "broadcast", "hi", "--id", "k", DATABASE_URL=down)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "cannot broadcast from" in result.stderr and "secret" not in result.stderr


def test_a_flows_audiences_are_named_once() -> None:
    with pytest.raises(FlowError, match="two audiences are named 'all'"):
        flow = Flow([Idle], audiences={"all": lambda state, data: True})
        flow.audience("all")(lambda state, data: True)
    with pytest.raises(FlowError, match="1 to 64 letters"):
        Flow([Idle], audiences={"no spaces": lambda state, data: True})
    with pytest.raises(LookupError, match=r"its audiences: none"):
        Flow([Idle]).audience_named("vip")
