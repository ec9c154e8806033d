"""The Heroku target, proved with Heroku's own file formats and a Foreman clone (honcho)."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from portabot.settings import Settings
from portabot.testing.fakes import FakeTelegram, free_port, wait_until_healthy
from tests.conftest import SECRET, TOKEN, post_telegram, say_web, telegram_update
from tests.storage.test_tls import behind_tls
from tests.targets.conftest import copy_checkout, installed, pins
from tests.test_cli import environment
from tests.test_runner import put_due

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOT_FOR_USERS = {
    "database_url",
    "telegram_api_url",
    "vk_api_url",
    "vk_api_version",
    "vk_image_hosts",
}
"""Set by the Postgres add-on, or only changed by tests."""


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_the_procfile_releases_with_a_migration_and_serves_with_gunicorn() -> None:
    assert procfile() == {
        "release": "portabot migrate",
        "web": "gunicorn --config targets/heroku/gunicorn.conf.py",
        "worker": "portabot poll",  # instead of the webhook: heroku ps:scale web=0 worker=1
        "clock": "portabot tick --every 60",  # what is due, when no web dyno runs it
    }


def test_gunicorn_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    config = runpy.run_path(str(ROOT / "targets/heroku/gunicorn.conf.py"))
    assert config["bind"] == "0.0.0.0:5123" and config["workers"] == 3
    assert config["worker_class"] == "portabot.worker.Worker"
    assert config["timeout"] < 30  # Heroku's router gives up at 30 s
    assert config["errorlog"] == "-" and config["accesslog"] is None  # the router logs requests
    monkeypatch.setenv("ACCESS_LOG", "on")
    config = runpy.run_path(str(ROOT / "targets/heroku/gunicorn.conf.py"))
    assert config["accesslog"] == "-"


def test_app_json_describes_every_setting_and_generates_secrets() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    settable = {name.upper() for name in Settings.model_fields} - {n.upper() for n in NOT_FOR_USERS}
    assert settable <= set(app["env"])
    assert all(entry["description"] for entry in app["env"].values())
    assert app["env"]["SESSION_SECRET"]["generator"] == "secret"
    assert app["env"]["TELEGRAM_SECRET"]["generator"] == "secret"
    plans = [addon["plan"] for addon in app["addons"]]
    assert any(plan.startswith("heroku-postgresql:") for plan in plans)
    assert "scheduler:standard" in plans  # runs `portabot maintain` (README)
    assert app["buildpacks"] == [{"url": "heroku/python"}]
    # Only the web dyno starts: the worker and the clock stay at 0 until scaled up.
    assert set(app["formation"]) == {"web"}


def test_the_buildpack_finds_python_and_the_dependencies() -> None:
    version = (ROOT / ".python-version").read_text().strip()
    assert version.count(".") == 1 and tuple(map(int, version.split("."))) >= (3, 11)
    assert (ROOT / "requirements.txt").read_text().splitlines()[-1] == "-r requirements/deploy.txt"


def test_the_buildpack_installs_the_locked_versions_then_the_project(tmp_path: Path) -> None:
    """What Heroku's Python buildpack does in the build directory: `pip install -r
    requirements.txt` (every pin hash-checked), then the bin/post_compile hook. Needs PyPI."""
    build = copy_checkout(tmp_path / "build")
    python = tmp_path / "python" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", python.parent.parent], check=True)
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    for step in (["pip", "install", "--quiet", "-r", "requirements.txt"], ["bin/post_compile"]):
        done = subprocess.run(step, cwd=build, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{step}: {done.stderr[-3000:]}"
    found = installed(python)
    assert found.pop("portabot") == "0.1.0" and found.pop("pip")
    assert found == pins(ROOT / "requirements" / "deploy.txt")
    version = subprocess.run(
        [python.parent / "portabot", "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("portabot 0.1.0"), version
    assert_installed_as_portabot(python, tmp_path)


AUTHOR_MODULE = """\
from portabot.conversation.engine import Context, Flow, State
from portabot.messages import Message


class Echo(State):
    name = "echo"

    async def handle(self, ctx: Context, message: Message) -> None:
        ctx.reply(message.text)


flow = Flow([Echo()], initial="echo")
"""


def assert_installed_as_portabot(python: Path, tmp_path: Path) -> None:
    """A regular install holds `portabot` with its types, and nothing named `core`: a bot
    author's own `core` package can't clash, and `mypy --strict` on their module passes."""
    code = "import portabot, importlib.util as u; print(portabot.__file__, u.find_spec('core'))"
    where = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    package, spec = where.stdout.split()
    assert "site-packages" in package and spec == "None", where
    assert (Path(package).parent / "py.typed").is_file()
    author = tmp_path / "author"
    author.mkdir()
    (author / "bot.py").write_text(AUTHOR_MODULE, encoding="utf-8")
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable"]
    checked = subprocess.run(
        [*mypy, str(python), "bot.py"], capture_output=True, text=True, cwd=author, timeout=300
    )
    assert checked.returncode == 0, checked.stdout


def heroku_environment(**values: str) -> dict[str, str]:
    # On a dyno, the buildpack's bin directory is on PATH and DYNO names the dyno.
    return environment(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DYNO="web.1", **values)


def honcho(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "honcho"), "-f", "Procfile", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def heroku_database_url(empty_postgres: str, tmp_path: Path) -> Iterator[str]:
    """DATABASE_URL as the Postgres add-on sets it: `postgres://`, no sslmode, to a server that
    takes TLS only (so TLS must be required by default: asyncpg's `prefer` is not enough)."""
    with behind_tls(empty_postgres, tmp_path) as url:
        yield url.replace("postgresql://", "postgres://", 1)


def test_release_then_web_under_honcho(
    heroku_database_url: str, fake_telegram: FakeTelegram
) -> None:
    port = free_port()
    env = heroku_environment(
        PORT=str(port),
        WEB_CONCURRENCY="2",
        DATABASE_URL=heroku_database_url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        SESSION_SECRET="heroku-session-secret",
    )
    release = honcho("start", "release", env=env)
    output, _ = release.communicate(timeout=120)
    assert release.returncode == 0, output
    assert "database schema at revision" in output

    web = honcho("start", "web", env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until_healthy(f"http://127.0.0.1:{port}", web)
            response = post_telegram(client, telegram_update(1, "/me", user_id=9))
            assert response.json() == {
                "method": "sendMessage",
                "chat_id": 9,
                "text": "Linked platforms: telegram.",
            }
            assert say_web(client, "/me") == ["Linked platforms: web."]
    finally:
        web.send_signal(signal.SIGTERM)
        output, _ = web.communicate(timeout=60)
    assert output.count("Booting worker with pid") == 2  # WEB_CONCURRENCY
    assert f"Listening at: http://0.0.0.0:{port}" in output


def test_the_worker_polls_telegram_under_honcho(
    heroku_database_url: str, fake_telegram: FakeTelegram
) -> None:
    """`heroku ps:scale web=0 worker=1`: updates by long polling instead of the webhook."""
    env = heroku_environment(
        DATABASE_URL=heroku_database_url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake_telegram.url,
    )
    fake_telegram.push(telegram_update(1, "/me", user_id=9))
    worker = honcho("start", "worker", env=env)
    try:
        deadline = time.monotonic() + 60
        while not fake_telegram.sent():
            assert worker.poll() is None and time.monotonic() < deadline, "no reply"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)  # what Heroku does to a dyno it stops
        output, _ = worker.communicate(timeout=60)
    assert fake_telegram.sent() == [{"chat_id": 9, "text": "Linked platforms: telegram."}]
    assert "stopped: 1 handled, 0 seen before" in output
    assert TOKEN not in output


def test_the_clock_runs_what_is_due_under_honcho(
    heroku_database_url: str, empty_postgres: str, fake_telegram: FakeTelegram
) -> None:
    """`heroku ps:scale clock=1`: `portabot tick --every 60`, from its first run at start."""
    put_due(empty_postgres, "sent by the clock")
    env = heroku_environment(
        DATABASE_URL=heroku_database_url,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake_telegram.url,
    )
    clock = honcho("start", "clock", env=env)
    try:
        deadline = time.monotonic() + 60
        while not fake_telegram.sent():
            assert clock.poll() is None and time.monotonic() < deadline, "nothing sent"
            time.sleep(0.05)
    finally:
        clock.send_signal(signal.SIGTERM)  # what Heroku does to a dyno it stops
        output, _ = clock.communicate(timeout=60)
    assert [call["text"] for call in fake_telegram.sent()] == ["sent by the clock"]
    assert "what is due runs every 60 s on postgres" in output
    assert "what is due: outbox: sent 1, failed 0" in output
    assert "stopped after " in output
    assert "Traceback" not in output and TOKEN not in output


def test_the_release_refuses_sqlite_on_heroku() -> None:
    release = honcho("start", "release", env=heroku_environment())
    output, _ = release.communicate(timeout=120)
    assert release.returncode != 0
    assert "DATABASE_URL is SQLite on Heroku, but a dyno's filesystem is wiped" in output
    assert "Traceback" not in output
