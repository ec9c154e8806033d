"""`portabot poll` as a user runs it, a real process against the fake Bot API: updates taken by
getUpdates are processed exactly once (repeats, restarts from an old offset), replies reach the
API exactly once, failures are waited out, a webhook is respected, and Ctrl-C or SIGTERM stops
it cleanly after the update in hand."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from portabot.testing.fakes import FakeTelegram
from tests.conftest import TOKEN, query, telegram_update
from tests.proxy import CuttableProxy
from tests.test_cli import PORTABOT, environment, portabot
from tests.test_runner import put_due

WEBHOOK = "https://bot.example.com/webhooks/telegram"
SLOW_FLOW = """
import asyncio
from pathlib import Path

from portabot.conversation.engine import Flow, State


class Slow(State):
    name = "slow"

    async def handle(self, ctx, message):
        Path(f"started-{message.text}").touch()
        for _ in range(3000):  # until the test has sent its signal (at most 30 s)
            if Path("signalled").exists():
                break
            await asyncio.sleep(0.01)
        ctx.reply(f"done {message.text}")


flow = Flow([Slow()], initial="slow")
"""


@dataclass
class Polling:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    """What the process has printed so far (read as it prints)."""
    output: str = ""
    """All it printed, once it has exited."""

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.append(line)

    def printed(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition: Callable[[], object]) -> None:
        """Until `condition` holds; the process must keep running meanwhile."""
        deadline = time.monotonic() + 60
        while not condition():
            assert self.process.poll() is None, "portabot poll exited"
            assert time.monotonic() < deadline, "the condition never held"
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM, then: Callable[[], object] = lambda: None) -> None:
        """Send the signal, call `then`, and wait for the process to exit."""
        self.process.send_signal(signum)
        then()
        self.exited()

    def exited(self) -> None:
        """Wait for the process to exit; then `output` is all it printed."""
        self.process.wait(timeout=60)
        self._reader.join(timeout=60)
        self.output = self.printed()


def poll_environment(fake: FakeTelegram, **env: str) -> dict[str, str]:
    return environment(**{"TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.url, **env})


@contextmanager
def polling(cwd: Path, fake: FakeTelegram, *args: str, **env: str) -> Iterator[Polling]:
    """`portabot poll` running; stopped with SIGTERM at the end unless the test stopped it."""
    process = subprocess.Popen(
        [PORTABOT, "poll", "--timeout", "5", *args],
        cwd=cwd,
        env=poll_environment(fake, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Polling(process)
    try:
        yield running
    finally:
        if process.returncode is None:
            running.stop()


def me(update_id: int, user_id: int) -> dict[str, Any]:
    return telegram_update(update_id, "/me", user_id=user_id)


def chats(fake: FakeTelegram) -> list[int]:
    return [payload["chat_id"] for payload in fake.sent()]


def offsets(fake: FakeTelegram) -> list[int]:
    """The offsets the getUpdates calls confirmed up to, in order."""
    return [c.payload["offset"] for c in fake.calls if "offset" in c.payload]


def stored(url: str) -> list[str]:
    found = query(url, "SELECT update_id FROM updates ORDER BY received_at")
    return [row["update_id"] for row in found]


def test_a_batch_with_repeats_is_processed_and_answered_once(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.push(me(1, 11), me(2, 12), me(2, 12), me(3, 13))
    with polling(tmp_path, fake_telegram, DATABASE_URL=database_url) as poller:
        poller.wait_for(lambda: 4 in offsets(fake_telegram))  # 3 confirmed: Telegram forgot it
        fake_telegram.push(me(3, 13), me(4, 14))
        poller.wait_for(lambda: len(fake_telegram.sent()) == 4)
        poller.stop()
    assert poller.process.returncode == 0, poller.output
    assert chats(fake_telegram) == [11, 12, 13, 14]
    assert fake_telegram.sent()[0]["text"] == "Linked platforms: telegram."
    assert stored(database_url) == ["1", "2", "3", "4"]
    assert "stopped: 4 handled, 1 seen before" in poller.output
    # Each update was confirmed by the next call's offset, only after it was processed.
    polls = [c.payload for c in fake_telegram.calls if c.method == "getUpdates"]
    confirmed: list[int] = [p["offset"] for p in polls[1:]]
    assert "offset" not in polls[0] and {4, 5} <= set(confirmed) and sorted(confirmed) == confirmed
    assert polls[0]["timeout"] == 5


def test_what_is_due_runs_beside_the_polling(
    tmp_path: Path, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    """A polling worker needs no clock of its own: it runs what is due every TICK_SECONDS."""
    with polling(tmp_path, fake_telegram, DATABASE_URL=empty_postgres, TICK_SECONDS="1") as poller:
        poller.wait_for(lambda: [c for c in fake_telegram.calls if c.method == "getUpdates"])
        put_due(empty_postgres, "due while polling")
        # The run's line, not the send: a stop between the two cancels the run (core/runner.py).
        poller.wait_for(lambda: "what is due: outbox: sent 1, failed 0" in poller.printed())
        poller.stop()
    assert poller.process.returncode == 0, poller.output
    assert [c["text"] for c in fake_telegram.sent()] == ["due while polling"]
    assert "Traceback" not in poller.output


def test_a_restart_from_an_old_offset_processes_nothing_twice(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    with polling(tmp_path, fake_telegram) as first:
        fake_telegram.push(me(1, 11), me(2, 12), me(3, 13))
        first.wait_for(lambda: len(fake_telegram.sent()) == 3)
    # Telegram hands out the same updates again (its offset never moved past them), and a new one.
    fake_telegram.queue(me(1, 11), me(2, 12), me(3, 13), me(4, 14))
    with polling(tmp_path, fake_telegram) as second:
        second.wait_for(lambda: len(fake_telegram.sent()) == 4)
        second.stop()
    assert chats(fake_telegram) == [11, 12, 13, 14]
    assert "stopped: 1 handled, 3 seen before" in second.output


def test_an_update_that_cannot_be_read_is_skipped(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.push({"update_id": 1, "message": {"chat": "nowhere"}}, me(2, 12))
    with polling(tmp_path, fake_telegram) as poller:
        poller.wait_for(fake_telegram.sent)
        poller.stop()
    assert chats(fake_telegram) == [12]
    assert "telegram update skipped: not a Telegram update: message.message_id" in poller.output
    assert "stopped: 1 handled, 0 seen before" in poller.output


def test_api_failures_are_waited_out(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    fake_telegram.fail_next(502, times=2, method="getUpdates")
    fake_telegram.fail_next(429, retry_after=1, method="getUpdates")
    fake_telegram.push(me(1, 11))
    with polling(tmp_path, fake_telegram) as poller:
        poller.wait_for(fake_telegram.sent)
        poller.stop()
    assert poller.process.returncode == 0
    assert [(c.method, c.payload.get("offset")) for c in fake_telegram.failed] == [
        ("getUpdates", None)
    ] * 3
    # Telegram's retry_after is honoured before the next try.
    retried = next(c for c in fake_telegram.calls if c.method == "getUpdates")
    assert retried.at - fake_telegram.failed[-1].at >= 1
    assert poller.output.count("HTTP 502") == 2 and "HTTP 429" in poller.output
    assert chats(fake_telegram) == [11] and TOKEN not in poller.output


def test_a_network_outage_is_waited_out(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    port = int(fake_telegram.url.rsplit(":", 1)[1])
    with CuttableProxy("127.0.0.1", port).running() as proxy:
        proxy.cut()
        api = f"http://127.0.0.1:{proxy.port}"
        with polling(tmp_path, fake_telegram, TELEGRAM_API_URL=api) as poller:
            proxy.wait_refused()  # it tried and failed: back now, while it waits
            proxy.restore()
            fake_telegram.push(me(1, 11))
            poller.wait_for(fake_telegram.sent)
            poller.stop()
    assert poller.process.returncode == 0
    assert "Telegram getWebhookInfo: " in poller.output and "trying again in" in poller.output
    assert chats(fake_telegram) == [11]


def test_it_refuses_to_start_while_a_webhook_is_set(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.webhook_url = WEBHOOK
    fake_telegram.push(me(1, 11))
    result = subprocess.run(
        [PORTABOT, "poll"],
        cwd=tmp_path,
        env=poll_environment(fake_telegram),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"webhook {WEBHOOK}" in result.stderr and "--drop-webhook" in result.stderr
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr + result.stdout
    assert [c.method for c in fake_telegram.calls] == ["getWebhookInfo"]
    assert fake_telegram.webhook_url == WEBHOOK and fake_telegram.sent() == []


def test_drop_webhook_removes_it_and_keeps_the_pending_updates(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.webhook_url = WEBHOOK
    fake_telegram.push(me(1, 11))
    with polling(tmp_path, fake_telegram, "--drop-webhook") as poller:
        poller.wait_for(fake_telegram.sent)
        poller.stop()
    assert fake_telegram.webhook_url == ""
    assert fake_telegram.sent("deleteWebhook") == [{}]  # no drop_pending_updates
    assert chats(fake_telegram) == [11]
    assert f"webhook {WEBHOOK} removed; the updates waiting for it are kept" in poller.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_finishes_the_update_in_hand_then_exits(
    tmp_path: Path, fake_telegram: FakeTelegram, signum: int
) -> None:
    (tmp_path / "slow.py").write_text(SLOW_FLOW, encoding="utf-8")
    fake_telegram.push(
        telegram_update(1, "one", user_id=11),
        telegram_update(2, "two", user_id=12),
        telegram_update(3, "three", user_id=13),
    )
    with polling(tmp_path, fake_telegram, BOT_FLOW="slow:flow") as first:
        first.wait_for((tmp_path / "started-one").exists)
        first.stop(signum, then=(tmp_path / "signalled").touch)  # "one" is in hand till then
    assert first.process.returncode == 0, first.output
    assert "stopped: 1 handled, 0 seen before" in first.output
    assert [p["text"] for p in fake_telegram.sent()] == ["done one"]
    assert not (tmp_path / "started-two").exists()
    # Nothing confirmed the batch: Telegram hands it out again, and only the rest is new.
    with polling(tmp_path, fake_telegram, BOT_FLOW="slow:flow") as second:
        second.wait_for(lambda: len(fake_telegram.sent()) == 3)
        second.stop()
    assert [p["text"] for p in fake_telegram.sent()] == ["done one", "done two", "done three"]
    assert "stopped: 2 handled, 1 seen before" in second.output


def test_poll_needs_the_telegram_token(tmp_path: Path) -> None:
    result = portabot(tmp_path, "poll")
    assert result.returncode == 1 and result.stderr == "portabot: poll needs TELEGRAM_TOKEN\n"


FRAGILE_FLOW = """
from portabot import Flow, State


class Fragile(State):
    def handle(self, ctx, message):
        if message.text == "boom":
            raise ValueError("cannot take this")
        ctx.reply("fine")


flow = Flow([Fragile], failure_text="Sorry, that one broke me.")
"""


def test_an_update_the_flow_keeps_failing_on_is_given_up_and_the_person_told(
    tmp_path: Path, database_url: str, fake_telegram: FakeTelegram
) -> None:
    (tmp_path / "fragile.py").write_text(FRAGILE_FLOW)
    fake_telegram.push(telegram_update(1, "boom"), telegram_update(2, "hi"))
    env = {"DATABASE_URL": database_url, "BOT_FLOW": "fragile:flow"}
    with polling(tmp_path, fake_telegram, **env) as poller:
        poller.wait_for(lambda: len(fake_telegram.sent()) == 2)
        poller.stop()
    assert [p["text"] for p in fake_telegram.sent()] == ["Sorry, that one broke me.", "fine"]
    [failed] = query(database_url, "SELECT update_id, attempts FROM failed_updates")
    assert (failed["update_id"], failed["attempts"]) == ("1", 3)
    assert "stopped: 1 handled, 0 seen before" in poller.output


def test_it_refuses_an_unmigrated_postgresql_database(
    tmp_path: Path, new_postgres: Callable[[str], str], fake_telegram: FakeTelegram
) -> None:
    fake_telegram.push(me(1, 11))
    with polling(tmp_path, fake_telegram, DATABASE_URL=new_postgres("poll_unmigrated")) as poller:
        poller.exited()
    assert poller.process.returncode == 2
    assert poller.output.strip().splitlines()[-1] == (
        "portabot: the database is not migrated: run portabot migrate"
    )
    assert not any(call.method == "getUpdates" for call in fake_telegram.calls)
