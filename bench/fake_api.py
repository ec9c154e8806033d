"""A fake Telegram Bot API in a process of its own (aiohttp, one event loop) that counts the calls
it gets and when the first and last sendMessage arrived: replies are counted here.

    python -m bench.fake_api PORT
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

BOT = {"id": 1, "is_bot": True, "first_name": "Bench", "username": "portabot_bench_bot"}
SENT = {
    "message_id": 1,
    "from": BOT,
    "chat": {"id": 1, "type": "private", "first_name": "Ann"},
    "date": 1_795_484_400,
    "text": "ok",
}
"""Every sendMessage gets this Message back: the peers parse it, none checks the chat."""
RESULTS: dict[str, bytes] = {
    "sendMessage": json.dumps({"ok": True, "result": SENT}).encode(),
    "getMe": json.dumps({"ok": True, "result": BOT}).encode(),
}
TRUE = json.dumps({"ok": True, "result": True}).encode()


class Recorder:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.first = 0.0
        self.last = 0.0

    async def call(self, request: web.Request) -> web.Response:
        await request.read()
        method = request.match_info["method"]
        self.calls[method] += 1
        if method == "sendMessage":
            # time.monotonic() is the system's CLOCK_MONOTONIC: the bench compares it with its own.
            self.last = time.monotonic()
            self.first = self.first or self.last
        return web.Response(body=RESULTS.get(method, TRUE), content_type="application/json")

    async def stats(self, request: web.Request) -> web.Response:
        body = {"calls": dict(self.calls), "first": self.first, "last": self.last}
        return web.json_response(body)

    async def reset(self, request: web.Request) -> web.Response:
        self.calls.clear()
        self.first = self.last = 0.0
        return web.json_response({"ok": True})


def make_app() -> web.Application:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", recorder.call)
    app.router.add_get("/stats", recorder.stats)
    app.router.add_post("/reset", recorder.reset)
    return app


@dataclass(frozen=True)
class ApiStats:
    calls: dict[str, int]
    first: float
    last: float

    @property
    def sent(self) -> int:
        return self.calls.get("sendMessage", 0)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass(frozen=True)
class FakeApi:
    """The running fake, seen from the bench."""

    url: str

    def _request(self, path: str, method: str = "GET") -> Any:
        with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method)) as r:
            return json.load(r)

    def stats(self) -> ApiStats:
        body = self._request("/stats")
        return ApiStats(body["calls"], body["first"], body["last"])

    def reset(self) -> None:
        self._request("/reset", "POST")


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
