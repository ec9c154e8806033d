"""A running server runs what is due by itself (core/runner.py): every TICK_SECONDS, at once
when poked, through a database outage, and not at all once it has stopped."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from portabot.app import create_app
from portabot.runner import DueRunner, did_something
from portabot.settings import Settings
from portabot.testing.fakes import FakeTelegram, free_port, serve, wait_until_healthy
from tests.conftest import TOKEN, make_settings, query
from tests.proxy import CuttableProxy
from tests.test_cli import PORTABOT, environment


def wait_for(what: str, done: Callable[[], Any], timeout: float = 30) -> Any:
    """Until `done()` is truthy (its value is returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := done()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)
    return value


def put_due(url: str, *texts: str, chat: str = "5") -> None:
    """Replies waiting in the outbox whose time has come, as an earlier failure leaves them."""
    for number, text in enumerate(texts):
        query(
            url,
            "INSERT INTO outbox (platform, chat_id, text, key, created_at, attempts) "
            f"VALUES ('telegram', '{chat}', '{text}', 'due-{number}', {time.time()}, 1)",
        )


def sent_texts(fake: FakeTelegram) -> list[str]:
    return [call["text"] for call in fake.sent()]


@contextmanager
def running(settings: Settings, **changes: Any) -> Iterator[tuple[httpx.Client, Any]]:
    """The app under uvicorn (lifespan and all); yields a client and the app."""
    app = create_app(make_settings(**{**settings.model_dump(), **changes}))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, app


def test_a_server_sends_a_due_reply_without_any_request(
    settings: Settings, database_url: str, fake_telegram: FakeTelegram
) -> None:
    with running(settings, tick_seconds=1) as (_, app):
        assert isinstance(app.state.bot.runner, DueRunner)
        put_due(database_url, "due by itself")
        wait_for("the reply sent", lambda: sent_texts(fake_telegram))
        sql = "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL"
        wait_for("the reply recorded as sent", lambda: query(database_url, sql)[0]["n"] == 0)
    assert sent_texts(fake_telegram) == ["due by itself"]  # once
    assert app.state.bot.runner is None  # stopped with the server


def test_a_poke_runs_what_is_due_at_once(
    settings: Settings, database_url: str, fake_telegram: FakeTelegram
) -> None:
    with running(settings, tick_seconds=3600) as (_, app):
        runner = app.state.bot.runner
        put_due(database_url, "poked")
        runner.poke()  # what an update that stored an outside call does
        wait_for("the poked run", lambda: sent_texts(fake_telegram))
        put_due(database_url, "again")  # another key
        runner.poke()
        runner.poke()
        wait_for("the second poke's run", lambda: len(fake_telegram.sent()) == 2)
    assert sent_texts(fake_telegram) == ["poked", "again"]


def test_no_loop_with_tick_seconds_0(settings: Settings) -> None:
    with running(settings, tick_seconds=0) as (client, app):
        assert client.get("/healthz").status_code == 200
        assert app.state.bot.runner is None


def test_a_failing_run_is_one_line_and_the_server_goes_on(
    empty_postgres: str,
    fake_telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = urlsplit(empty_postgres)
    portabot_log = logging.getLogger("portabot")  # it does not pass its records to the root
    portabot_log.addHandler(caplog.handler)
    try:
        with CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432).running() as proxy:
            proxied = empty_postgres.replace(
                parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}"
            )
            proxy.cut()
            settings = make_settings(
                telegram_token=TOKEN, telegram_api_url=fake_telegram.url, tick_seconds=1
            )
            with running(settings, database_url=proxied) as (client, _):
                put_due(empty_postgres, "after the outage")
                proxy.wait_refused(4)  # the schema check and the run, twice
                assert client.get("/").status_code == 200
                assert client.get("/healthz").status_code == 503
                proxy.restore()
                wait_for("the reply sent after the outage", lambda: sent_texts(fake_telegram))
    finally:
        portabot_log.removeHandler(caplog.handler)
    lines = [r for r in caplog.records if r.name == "portabot.runner"]
    failures = [r for r in lines if r.levelno == logging.WARNING]
    assert len(failures) >= 2 and all(r.exc_info is None for r in failures)
    for record in failures:
        line = record.getMessage()
        assert line.startswith("running what is due failed: ") and "\n" not in line
    assert lines[-1].getMessage() == "what is due: outbox: sent 1, failed 0"
    assert sent_texts(fake_telegram) == ["after the outage"]


def test_portabot_serve_runs_what_is_due_and_stops_cleanly(
    tmp_path: Path, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    put_due(empty_postgres, "served")
    port = free_port()
    env = environment(
        DATABASE_URL=empty_postgres,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake_telegram.url,
        TICK_SECONDS="1",
    )
    process = subprocess.Popen(
        [PORTABOT, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, timeout=30)
        wait_for("the reply sent by the server alone", lambda: sent_texts(fake_telegram))
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "what is due: outbox: sent 1, failed 0" in output
    assert "Traceback" not in output and "Task was destroyed" not in output
    assert sent_texts(fake_telegram) == ["served"]


@pytest.mark.parametrize(
    ("lines", "something"),
    [
        (["outbox: sent 0, failed 0"], False),
        (["outbox: sent 0, failed 0; 0 waiting for a later try"], False),
        ([], False),
        (["outbox: sent 2, failed 0"], True),
        (["outbox: sent 0, failed 1"], True),
        (["timers: 0 fired", "calls: 10 run"], True),
        (["outbox: sent 0, failed 0 in 0.25 s"], False),  # a duration is not work
    ],
)
def test_a_run_did_something_when_it_counts_anything(lines: list[str], something: bool) -> None:
    assert did_something(lines) is something
