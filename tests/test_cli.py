"""The `portabot` command as a user runs it: a real process, its output and exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from portabot.settings import Settings
from portabot.storage.migrate import head_revision
from portabot.testing.fakes import FakeTelegram, FakeVk, free_port, wait_until_healthy
from tests.conftest import (
    SECRET,
    TOKEN,
    VK_GROUP,
    VK_SECRET,
    VK_TOKEN,
    make_settings,
    post_telegram,
    say_web,
    telegram_update,
)

PORTABOT = str(Path(sys.executable).with_name("portabot"))
OUR_VARIABLES = {name.upper() for name in Settings.model_fields} | {"PORT"}


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    return {**env, **values}


def portabot(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PORTABOT, *args],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["migrate"],
        ["set-webhook"],
        ["check"],
        ["deliver"],
        ["broadcast"],
        ["maintain"],
        ["tick"],
        ["poll"],
        ["costs"],
        ["package"],
        ["package", "lambda"],
    ],
)
def test_help(tmp_path: Path, command: list[str]) -> None:
    result = portabot(tmp_path, *command, "--help")
    assert result.returncode == 0 and "usage: portabot" in result.stdout


def test_bad_configuration_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = portabot(tmp_path, "check", DATABASE_URL="mysql://root:hunter2@db/x")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "DATABASE_URL" in result.stderr and "hunter2" not in result.stderr


def test_migrate_then_check(tmp_path: Path) -> None:
    before = portabot(tmp_path, "check")
    assert before.returncode == 1 and "run `portabot migrate`" in before.stdout
    migrated = portabot(tmp_path, "migrate")
    assert migrated.returncode == 0 and f"revision {head_revision()}" in migrated.stdout
    assert (tmp_path / "portabot.db").exists()
    after = portabot(tmp_path, "check")
    assert after.returncode == 0, after.stdout
    assert "configuration is complete" in after.stdout


def test_migrate_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres:pw-do-not-show@127.0.0.1:{free_port()}/x"
    result = portabot(tmp_path, "migrate", DATABASE_URL=url)
    assert result.returncode == 1
    assert result.stderr.startswith("portabot: cannot migrate postgresql://postgres:********@")
    assert result.stderr.count("\n") == 1 and "pw-do-not-show" not in result.stderr


def test_check_telegram_configuration(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    portabot(tmp_path, "migrate")
    env = {"TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake_telegram.url}
    missing = portabot(tmp_path, "check", **env)
    assert missing.returncode == 1
    assert "FAIL PUBLIC_URL" in missing.stdout
    assert "Telegram accepts the token (bot @portabot_test_bot)" in missing.stdout
    complete = portabot(tmp_path, "check", PUBLIC_URL="https://bot.example.com", **env)
    assert complete.returncode == 0, complete.stdout
    wrong = portabot(tmp_path, "check", **{**env, "TELEGRAM_TOKEN": "123:" + "x" * 35})
    assert "FAIL TELEGRAM_TOKEN was refused: Telegram getMe: HTTP 401" in wrong.stdout
    assert "x" * 35 not in wrong.stdout + wrong.stderr


def test_set_webhook(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    result = portabot(
        tmp_path,
        "set-webhook",
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        PUBLIC_URL="https://bot.example.com/",
    )
    assert result.returncode == 0, result.stderr
    assert fake_telegram.sent("setWebhook") == [
        {
            "url": "https://bot.example.com/webhooks/telegram",
            "secret_token": SECRET,
            "allowed_updates": ["message", "edited_message", "callback_query"],
            "drop_pending_updates": False,
        }
    ]
    assert "https://bot.example.com/webhooks/telegram" in result.stdout
    assert TOKEN not in result.stdout and SECRET not in result.stdout


def test_set_webhook_needs_a_public_https_url(tmp_path: Path) -> None:
    result = portabot(tmp_path, "set-webhook", TELEGRAM_TOKEN=TOKEN, PUBLIC_URL="http://x.example")
    assert result.returncode == 1 and "PUBLIC_URL" in result.stderr


@dataclass
class Served:
    client: httpx.Client
    port: int
    output: str = ""
    returncode: int | None = None


@contextmanager
def portabot_serve(cwd: Path, *args: str, **env: str) -> Iterator[Served]:
    """`portabot serve` as a process; yields once /healthz answers, then stops it with Ctrl-C."""
    port = free_port()
    process = subprocess.Popen(
        [PORTABOT, "serve", "--port", str(port), *args],
        cwd=cwd,
        env=environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30), port)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, timeout=30)
        yield served
    finally:
        served.client.close()
        process.send_signal(signal.SIGINT)
        served.output, _ = process.communicate(timeout=30)
        served.returncode = process.returncode


def test_a_newcomers_first_run(tmp_path: Path) -> None:
    """No tokens, no PostgreSQL: `portabot serve` migrates SQLite, serves the page and the chat."""
    with portabot_serve(tmp_path) as served:
        assert "chat" in served.client.get("/").text
        assert say_web(served.client, "/me") == ["Linked platforms: web."]
    assert served.returncode == 0
    assert f"open http://127.0.0.1:{served.port}/" in served.output
    assert "flow portabot.builtin:build with passphrase, linking" in served.output
    assert (tmp_path / "portabot.db").exists()


def vk_environment(fake_vk: FakeVk, **more: str) -> dict[str, str]:
    return {
        "VK_TOKEN": VK_TOKEN,
        "VK_GROUP_ID": str(VK_GROUP),
        "VK_API_URL": fake_vk.url,
        "PUBLIC_URL": "https://bot.example.com",
        **more,
    }


def test_set_webhook_registers_the_vk_callback_server(tmp_path: Path, fake_vk: FakeVk) -> None:
    env = vk_environment(fake_vk, VK_SECRET=VK_SECRET)
    first = portabot(tmp_path, "set-webhook", **env)
    assert first.returncode == 0, first.stderr
    assert "VK Callback API server set: https://bot.example.com/webhooks/vk" in first.stdout
    [added] = fake_vk.sent("groups.addCallbackServer")
    assert added == {
        "group_id": str(VK_GROUP),
        "url": "https://bot.example.com/webhooks/vk",
        "title": "portabot",
        "secret_key": VK_SECRET,
        "v": "5.199",
    }
    [settings] = fake_vk.sent("groups.setCallbackSettings")
    assert settings["server_id"] == "1" and settings["api_version"] == "5.199"
    for event in ("message_new", "message_edit", "message_allow", "group_join", "group_leave"):
        assert settings[event] == "1"
    assert VK_SECRET not in first.stdout and VK_TOKEN not in first.stdout
    # Run again: the same server is updated, not added twice.
    assert portabot(tmp_path, "set-webhook", **env).returncode == 0
    assert len(fake_vk.sent("groups.addCallbackServer")) == 1
    assert fake_vk.sent("groups.editCallbackServer")[0]["server_id"] == "1"


@pytest.mark.parametrize("given_secret", [True, False])
def test_set_webhook_says_what_to_enter_when_the_vk_token_cannot(
    tmp_path: Path, fake_vk: FakeVk, given_secret: bool
) -> None:
    fake_vk.fail_next(code=15, message="Access denied")
    env = vk_environment(fake_vk, **({"VK_SECRET": VK_SECRET} if given_secret else {}))
    result = portabot(tmp_path, "set-webhook", **env)
    assert result.returncode == 0
    assert "address: https://bot.example.com/webhooks/vk" in result.stdout
    assert (
        "events: message_new, message_edit, message_allow, group_join, group_leave" in result.stdout
    )
    derived = make_settings(vk_token=VK_TOKEN).vk_callback_secret()
    assert derived is not None
    if given_secret:  # the user chose it: name it, do not print it
        assert "secret key: the value of VK_SECRET" in result.stdout
        assert VK_SECRET not in result.stdout
    else:  # derived: it must be entered by hand, so it is shown
        assert f"secret key: {derived}" in result.stdout


def test_check_vk_configuration(tmp_path: Path, fake_vk: FakeVk) -> None:
    portabot(tmp_path, "migrate")
    complete = portabot(tmp_path, "check", **vk_environment(fake_vk))
    assert complete.returncode == 0, complete.stdout
    assert f"ok   VK accepts the token for group {VK_GROUP}" in complete.stdout
    no_group = portabot(tmp_path, "check", VK_TOKEN=VK_TOKEN)
    assert (
        no_group.returncode == 1
        and "FAIL VK_TOKEN is set but VK_GROUP_ID is not" in no_group.stdout
    )
    wrong = portabot(tmp_path, "check", **vk_environment(fake_vk, VK_TOKEN="another-token"))
    assert "FAIL VK_TOKEN was refused: VK groups.getCallbackConfirmationCode" in wrong.stdout


def test_check_reports_a_flow_that_cannot_be_loaded(tmp_path: Path) -> None:
    portabot(tmp_path, "migrate")
    result = portabot(tmp_path, "check", BOT_FLOW="nowhere.at_all:flow")
    assert result.returncode == 1 and "FAIL BOT_FLOW: cannot import nowhere.at_all" in result.stdout


@pytest.mark.parametrize(
    ("marker", "host"), [("DYNO", "Heroku"), ("AWS_LAMBDA_FUNCTION_NAME", "Lambda")]
)
def test_sqlite_is_refused_where_its_file_would_be_lost(
    tmp_path: Path, marker: str, host: str
) -> None:
    for command in ("migrate", "serve"):
        result = portabot(tmp_path, command, **{marker: "x"})
        assert result.returncode == 1 and result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"portabot: DATABASE_URL is SQLite on {host}, but ")
    assert not (tmp_path / "portabot.db").exists()


def test_check_target_heroku_needs_postgresql(tmp_path: Path) -> None:
    portabot(tmp_path, "migrate")
    result = portabot(tmp_path, "check", "--target", "heroku")
    assert result.returncode == 1
    assert "FAIL heroku needs PostgreSQL" in result.stdout


@pytest.mark.parametrize(
    ("workers", "verdict", "figure"),
    [
        (
            "4",
            "ok  ",
            "1 web dyno × 4 workers × DATABASE_POOL_SIZE 4 + 0 worker dynos (portabot poll) × 4"
            " + 1 Scheduler dyno (portabot maintain) × 2 + 1 = 19 connections of the database's 20",
        ),
        ("6", "FAIL", "= 27 connections of the database's 20: lower WEB_CONCURRENCY"),
    ],
)
def test_check_target_heroku_counts_connections(
    tmp_path: Path, empty_postgres: str, workers: str, verdict: str, figure: str
) -> None:
    env = {"DATABASE_URL": empty_postgres, "WEB_CONCURRENCY": workers}
    result = portabot(tmp_path, "check", "--target", "heroku", **env)
    assert f"{verdict} " in result.stdout and figure in result.stdout
    assert result.returncode == (0 if verdict == "ok  " else 1)


def test_check_target_heroku_counts_the_worker_and_scheduler_dynos(
    tmp_path: Path, empty_postgres: str
) -> None:
    """`heroku ps:scale web=0 worker=1`, and two Scheduler jobs that may overlap."""
    args = [
        "--target",
        "heroku",
        "--instances",
        "0",
        "--worker-dynos",
        "1",
        "--scheduler-dynos",
        "2",
    ]
    env = {"DATABASE_URL": empty_postgres, "DATABASE_POOL_SIZE": "3"}
    result = portabot(tmp_path, "check", *args, **env)
    assert result.returncode == 0, result.stdout
    assert (
        "ok   0 web dynos × 2 workers × DATABASE_POOL_SIZE 3 + 1 worker dyno (portabot poll) × 3"
        " + 2 Scheduler dynos (portabot maintain) × 2 + 1 = 8 connections of the database's 20"
    ) in result.stdout
    # Heroku's URL has no sslmode: the check says TLS will be required there.
    assert (
        "ok   DATABASE_URL has no sslmode: on Heroku portabot connects with sslmode=require "
        "(TLS or no connection), as Heroku Postgres asks"
    ) in result.stdout
    negative = portabot(tmp_path, "check", "--target", "heroku", "--worker-dynos", "-1")
    assert negative.returncode == 2 and "must be 0 or more: -1" in negative.stderr
    # The clock dyno (`portabot tick --every 60`), once scaled up, keeps a pool of its own.
    clock = portabot(tmp_path, "check", "--target", "heroku", "--clock-dynos", "1", **env)
    assert (
        "+ 1 clock dyno (portabot tick) × 3 + 1 Scheduler dyno (portabot maintain) × 2 + 1 = 12"
    ) in clock.stdout


def test_check_target_heroku_refuses_sslmode_disable(tmp_path: Path, empty_postgres: str) -> None:
    env = {"DATABASE_URL": f"{empty_postgres}?sslmode=disable"}
    result = portabot(tmp_path, "check", "--target", "heroku", **env)
    assert result.returncode == 1
    assert "FAIL DATABASE_URL says sslmode=disable: Heroku Postgres refuses" in result.stdout


def test_check_hides_a_password_given_in_the_query_string(
    tmp_path: Path, empty_postgres: str
) -> None:
    env = {"DATABASE_URL": f"{empty_postgres}?password=query-pw-do-not-show&sslpassword=key-pw"}
    result = portabot(tmp_path, "check", **env)
    assert "ok   database postgresql://" in result.stdout
    assert "password=********&sslpassword=********" in result.stdout
    assert "do-not-show" not in result.stdout + result.stderr
    assert "key-pw" not in result.stdout + result.stderr
    unreachable = f"postgresql://u@127.0.0.1:{free_port()}/x?password=query-pw-do-not-show"
    for command in ("check", "migrate"):
        failed = portabot(tmp_path, command, DATABASE_URL=unreachable)
        assert failed.returncode == 1 and "password=********" in failed.stdout + failed.stderr
        assert "do-not-show" not in failed.stdout + failed.stderr


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("max_size=abc", "max_size must be a whole number (got 'abc')"),
        ("client_encoding=LATIN1", "client_encoding must be UTF8"),
        ("require_auth=scram-sha-256", "require_auth is not supported"),
    ],
)
def test_a_database_url_option_that_cannot_work_is_one_line(
    tmp_path: Path, query: str, message: str
) -> None:
    for command in ("check", "migrate", "serve"):
        result = portabot(tmp_path, command, DATABASE_URL=f"postgres://u:pw-secret@h/d?{query}")
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "DATABASE_URL" in result.stderr and message in result.stderr
        assert "Traceback" not in result.stderr and "pw-secret" not in result.stderr


def test_check_target_lambda_counts_one_connection_per_container(
    tmp_path: Path, empty_postgres: str
) -> None:
    args = ["check", "--target", "lambda", "--instances", "50", "--max-connections", "40"]
    result = portabot(tmp_path, *args, DATABASE_URL=empty_postgres)
    assert result.returncode == 1
    assert "FAIL 50 concurrent Lambda containers × 1 connection + 1 = 51" in result.stdout
    assert "note DATABASE_URL has no sslmode" in result.stdout


def test_check_target_vps_accepts_sqlite(tmp_path: Path) -> None:
    portabot(tmp_path, "migrate")
    result = portabot(tmp_path, "check", "--target", "vps")
    assert result.returncode == 0
    assert "note SQLite: fine on one machine" in result.stdout


def test_package_lambda_refuses_a_python_lambda_does_not_run(tmp_path: Path) -> None:
    result = portabot(tmp_path, "package", "lambda", "--python-version", "2.7")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "Python version must be 3.11 or newer" in result.stderr
    assert not (tmp_path / "dist").exists()


def test_show_prints_a_persons_accounts_and_state(
    tmp_path: Path, bot: httpx.Client, database_url: str
) -> None:
    issued = post_telegram(bot, telegram_update(1, "/bind", user_id=123)).json()["text"]
    code = issued.rsplit("/in ", 1)[1]
    result = portabot(tmp_path, "show", "telegram:123", DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("person ") and lines[1] == "accounts:"
    assert lines[2].startswith("  telegram:123  chat 123  since 20")
    assert lines[3].startswith("state: ") and lines[3] != "state: (none yet)"
    assert lines[-1].startswith("last written: 20")
    # The pending link code is a credential: shown as hidden, never itself.
    assert '"code": "(hidden)"' in result.stdout and code not in result.stdout
    assert '"code_expires": ' in result.stdout


def test_show_an_unknown_account_or_a_bad_argument_is_one_line(
    tmp_path: Path, database_url: str
) -> None:
    unknown = portabot(tmp_path, "show", "telegram:999", DATABASE_URL=database_url)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr == "portabot: no one has written from telegram:999\n"
    for bad in ("telegram", "telegram:", ":123"):
        result = portabot(tmp_path, "show", bad, DATABASE_URL=database_url)
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert "usage: portabot show PLATFORM:USER_ID" in result.stderr


BROKEN_FLOW = """
from portabot import Flow, State


class Address(State):
    pass


flow = Flow([Address], initial="adress")
"""

FLOW_WITH_A_PROBLEM = """
from portabot.conversation.engine import Flow, State
from portabot.features import Feature


class Tickets(Feature):
    name = "tickets"

    def problems(self, settings):
        return ["TICKETS_EMAIL unset: nobody hears of new tickets"]


class Echo(State):
    name = "echo"


flow = Flow([Echo()], initial="echo", features=[Tickets()])
"""


def test_check_builds_the_flow_and_reports_what_fails_in_one_line(tmp_path: Path) -> None:
    portabot(tmp_path, "migrate")
    (tmp_path / "broken.py").write_text(BROKEN_FLOW, encoding="utf-8")
    result = portabot(tmp_path, "check", BOT_FLOW="broken:flow")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL BOT_FLOW broken:flow cannot be built: ") and "adress" in line


def test_check_reports_each_features_problems(tmp_path: Path) -> None:
    (tmp_path / "tickets.py").write_text(FLOW_WITH_A_PROBLEM, encoding="utf-8")
    portabot(tmp_path, "migrate", BOT_FLOW="tickets:flow")
    result = portabot(tmp_path, "check", BOT_FLOW="tickets:flow")
    assert result.returncode == 1
    assert "ok   flow tickets:flow with tickets" in result.stdout
    assert "FAIL tickets: TICKETS_EMAIL unset: nobody hears of new tickets" in result.stdout


def test_check_reports_a_passphrase_that_the_flow_never_asks_for(tmp_path: Path) -> None:
    (tmp_path / "tickets.py").write_text(FLOW_WITH_A_PROBLEM, encoding="utf-8")
    portabot(tmp_path, "migrate", BOT_FLOW="tickets:flow")
    result = portabot(tmp_path, "check", BOT_FLOW="tickets:flow", BOT_PASSPHRASE="open sesame")
    assert "FAIL BOT_PASSPHRASE is set but the flow has no Passphrase feature" in result.stdout
    assert "open sesame" not in result.stdout


def echo_flow(reply: str) -> str:
    return f"""
from portabot.conversation.engine import Flow, State


class Echo(State):
    name = "echo"

    async def handle(self, ctx, message):
        ctx.reply({reply!r})


flow = Flow([Echo()], initial="echo")
"""


def test_serve_reload_restarts_when_the_flow_changes(tmp_path: Path) -> None:
    module = tmp_path / "echo.py"
    module.write_text(echo_flow("first"), encoding="utf-8")
    unlimited = {"WEB_CHAT_PER_ADDRESS": "100000", "WEB_CHAT_TOTAL": "1000000"}  # it asks often
    with portabot_serve(tmp_path, "--reload", BOT_FLOW="echo:flow", **unlimited) as served:
        assert say_web(served.client, "hi") == ["first"]
        module.write_text(echo_flow("second"), encoding="utf-8")
        deadline = time.monotonic() + 60
        replies = ["first"]
        while replies != ["second"]:
            assert time.monotonic() < deadline, f"still {replies} after a minute"
            if replies == ["first"]:
                # The old server still answers: a later mtime, in case the reloader had not yet
                # taken its first look when the file was written.
                later = module.stat().st_mtime + 1
                os.utime(module, (later, later))
            try:
                replies = served.client.post("/webhooks/web", json={"text": "hi"}).json()["texts"]
            except httpx.TransportError:
                replies = []  # between the old server and the new one
    assert "flow echo:flow" in served.output and "restarting on changes" in served.output


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`portabot costs … | head`: the JSON (some 200 KB) outgrows the pipe's buffer, so the
    command is still writing when the reader goes away."""
    args = ["costs", "--updates", "10k,1M,100M,1B", "--format", "json"]
    with subprocess.Popen(
        [PORTABOT, *args],
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == "[\n"
        process.stdout.close()
        errors = process.stderr.read()
        assert process.wait(60) == 1
    assert errors == ""
