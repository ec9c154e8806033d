"""Slow and huge requests against real server processes: a body sent a byte at a time is cut off
with a 408 after BODY_TIMEOUT_SECONDS while the bot keeps answering, and a 64 MB header costs the
server no more than a little memory (`portabot serve`, which has no proxy in front)."""

from __future__ import annotations

import selectors
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from bench.processes import (
    Process,
    bench_environment,
    children,
    free_port,
    memory_mb,
    running,
    wait_until_answering,
)
from portabot.testing.fakes import FakeTelegram
from tests.conftest import SECRET, TOKEN, post_telegram, telegram_update

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BODY_TIMEOUT = 2.0
SLOW_CLIENTS = 200


@contextmanager
def gunicorn(tmp_path: Path, sqlite_template: Path, **env: str) -> Iterator[tuple[str, Process]]:
    """The VPS unit's gunicorn (targets/vps/gunicorn.conf.py), one worker, on SQLite."""
    shutil.copy(sqlite_template, tmp_path / "bot.db")
    port = free_port()
    environment = bench_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
        BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        **env,
    )
    command = [str(BIN / "gunicorn"), "--config", str(ROOT / "targets/vps/gunicorn.conf.py")]
    with running("gunicorn", command, log=tmp_path / "gunicorn.log", env=environment) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{url}/healthz", process)
        yield url, process


def slow_request(port: int) -> socket.socket:
    """A Telegram delivery whose headers are all sent, and one byte of its 1,000-byte body."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /webhooks/telegram HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        b"X-Telegram-Bot-Api-Secret-Token: " + SECRET.encode() + b"\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    return sock


def test_slow_bodies_get_a_408_while_the_bot_answers(
    tmp_path: Path, sqlite_template: Path, fake_telegram: FakeTelegram
) -> None:
    with gunicorn(
        tmp_path,
        sqlite_template,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    ) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        slow = [slow_request(port) for _ in range(SLOW_CLIENTS)]
        selector = selectors.DefaultSelector()
        for sock in slow:
            selector.register(sock, selectors.EVENT_READ)
        with httpx.Client(base_url=url, timeout=10) as bot:
            assert bot.get("/healthz").json()["status"] == "ok"
            answered = post_telegram(bot, telegram_update(1, "/me"))
            assert answered.status_code == 200
            assert answered.json()["text"] == "Linked platforms: telegram."
            # ...while every slow one was still held open, unanswered.
            assert selector.select(timeout=0) == []
            held = time.monotonic() - started
            assert held < BODY_TIMEOUT, f"the checks took {held:.1f} s: make BODY_TIMEOUT longer"

            replies: dict[socket.socket, bytes] = {sock: b"" for sock in slow}
            closed: dict[socket.socket, float] = {}
            deadline = started + BODY_TIMEOUT + 15
            while len(closed) < len(slow) and time.monotonic() < deadline:
                for sock in slow:  # a byte at a time: progress does not extend the deadline
                    if sock not in closed:
                        with suppress(OSError):  # the server has hung up
                            sock.send(b" ")
                for key, _ in selector.select(timeout=0.5):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    try:
                        data = ready.recv(65536)
                    except OSError:
                        data = b""
                    replies[ready] += data
                    if not data:  # the server closed the connection
                        closed[ready] = time.monotonic() - started
                        selector.unregister(ready)
            for sock in slow:
                sock.close()
            assert len(closed) == SLOW_CLIENTS
            assert min(closed.values()) >= BODY_TIMEOUT
            for reply in replies.values():
                head, _, body = reply.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408 "), reply[:200]
                assert b"connection: close" in head.lower()
                assert body == b'{"error":"request body not received within 2 s"}'
            assert bot.get("/healthz").json()["status"] == "ok"


def test_a_64_mb_header_costs_portabot_serve_little_memory(
    tmp_path: Path, sqlite_template: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "bot.db")
    port = free_port()
    env = bench_environment(DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    command = [str(BIN / "portabot"), "serve", "--port", str(port)]
    with running("serve", command, log=tmp_path / "serve.log", env=env, cwd=tmp_path) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{url}/healthz", process)
        assert children(process.pid) == []  # the server is this process
        before = memory_mb(process.pid)["vmhwm"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bot\r\nX-Big: ")
            reply = b""
            try:
                for _ in range(64 * 16):  # 64 MB in 64 KiB pieces, until the server hangs up
                    sock.sendall(b"x" * 65536)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass
            try:
                while chunk := sock.recv(65536):
                    reply += chunk
            except OSError:  # TimeoutError too: a server that kept the connection open
                pass
        after = memory_mb(process.pid)["vmhwm"]
        assert after - before < 5, (before, after)  # MB: the header was never held whole
        # h11 gave up past its limit and hung up (its 400 may or may not have been read).
        assert reply.startswith(b"HTTP/1.1 400 ") or reply == b"", reply[:200]
        with httpx.Client(base_url=url) as client:
            assert client.get("/healthz").json()["status"] == "ok"


def test_headers_over_the_limit_get_a_431_from_gunicorn_too(
    tmp_path: Path, sqlite_template: Path
) -> None:
    # Behind Caddy (or Heroku's router), which bounds them before they reach httptools.
    with gunicorn(tmp_path, sqlite_template) as (url, _), httpx.Client(base_url=url) as client:
        response = client.get("/healthz", headers={"X-Big": "x" * 20_000})
        assert response.status_code == 431
        assert response.json() == {"error": "request headers too large"}
