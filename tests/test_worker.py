"""gunicorn's worker (core/worker.py): each response leaves in one write, and pipelined requests on
one connection are answered in order."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any, cast

from portabot.testing.fakes import FakeTelegram
from portabot.worker import OneWrite
from tests.conftest import SECRET, TOKEN, telegram_update
from tests.test_slow_requests import gunicorn


class Recording:
    """What OneWrite writes through to: each write, and whether it was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def one_write(transport: Recording, loop: asyncio.AbstractEventLoop) -> OneWrite:
    return OneWrite(cast(asyncio.Transport, transport), loop)


def test_writes_of_one_turn_go_out_together_at_its_end() -> None:
    async def scenario() -> None:
        real = Recording()
        transport = one_write(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert real.writes == []  # held until the turn ends
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        transport.write(b"next")
        await asyncio.sleep(0)
        assert real.writes[1:] == [b"next"]
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest passes through

    asyncio.run(scenario())


def test_closing_sends_what_is_held_and_a_closed_transport_gets_nothing() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        real = Recording()
        transport = one_write(real, loop)
        transport.write(b"last words")
        transport.close()
        assert real.writes == [b"last words"] and real.closing
        await asyncio.sleep(0)  # the turn's flush finds nothing more
        assert real.writes == [b"last words"]

        gone = Recording()
        late = one_write(gone, loop)
        late.write(b"to a client that left")
        gone.closing = True
        await asyncio.sleep(0)
        assert gone.writes == []

        aborted = Recording()
        dropped = one_write(aborted, loop)
        dropped.write(b"never sent")
        dropped.abort()
        await asyncio.sleep(0)
        assert aborted.writes == [] and aborted.aborted

    asyncio.run(scenario())


def request(update_id: int) -> bytes:
    body = json.dumps(telegram_update(update_id, "hello")).encode()
    return (
        b"POST /webhooks/telegram HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        b"X-Telegram-Bot-Api-Secret-Token: " + SECRET.encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def test_the_worker_answers_in_one_piece_and_in_order(
    tmp_path: Path, sqlite_template: Path, fake_telegram: FakeTelegram
) -> None:
    with gunicorn(
        tmp_path,
        sqlite_template,
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_SECRET=SECRET,
        TELEGRAM_API_URL=fake_telegram.url,
        BOT_FLOW="examples.counter:flow",
    ) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request(1))
            # One write of head and body: the first read finds the whole response.
            first = sock.recv(65536)
            head, _, body = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            lines = head.split(b"\r\n")
            length = next(int(line.split(b":")[1]) for line in lines if b"content-length" in line)
            assert len(body) == length
            assert json.loads(body)["text"] == "That was message 1."
            # Two requests at once on the same connection: two answers, in order.
            sock.sendall(request(2) + request(3))
            received = b""
            while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, "the worker closed the connection"
                received += chunk
        answers = [piece for piece in received.split(b"HTTP/1.1 ") if piece]
        texts = [json.loads(answer.partition(b"\r\n\r\n")[2])["text"] for answer in answers]
        assert texts == ["That was message 2.", "That was message 3."]
    assert fake_telegram.calls == []  # both replies rode in the responses
