"""Fake Telegram Bot API and VK API servers on loopback that record what they receive, for a
deployment's own integration tests (and the project's): point TELEGRAM_API_URL or VK_API_URL at
one's `url` and read back what the bot sent. They need no pytest."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

__all__ = [
    "ApiCall",
    "Failure",
    "FakeTelegram",
    "FakeVk",
    "free_port",
    "serve",
    "wait_until_healthy",
]


def free_port() -> int:
    """A loopback port nobody listens on (for a server of one's own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run `app` under uvicorn in a thread (lifespan included); yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class ApiCall:
    """One call the fake received: the token it came with, the method and its parameters."""

    token: str
    method: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    """A failure queued by `fail_next`: the HTTP status and body to answer with."""

    status: int
    body: dict[str, Any]
    method: str | None
    """The method it answers (None: the next call of any)."""


@dataclass
class FakeTelegram:
    """A Bot API that records every call and answers as Telegram does; failures can be queued.
    For long polling it keeps the updates given to `push` until a getUpdates call's offset passes
    them, as Telegram does, and holds a getUpdates with nothing to give for at most `poll_wait`
    seconds of the timeout asked for."""

    token: str
    calls: list[ApiCall] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    failed: list[ApiCall] = field(default_factory=list)
    """Calls answered with a queued failure."""
    pending: list[dict[str, Any]] = field(default_factory=list)
    webhook_url: str = ""
    poll_wait: float = 0.5
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        self.calls.clear()
        self.failures.clear()
        self.failed.clear()
        with self._lock:
            self.pending.clear()
        self.webhook_url = ""

    def fail_next(
        self,
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        method: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": "Fake failure"}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        self.failures.extend([Failure(status, body, method)] * times)

    def push(self, *updates: dict[str, Any]) -> None:
        """Updates for getUpdates to hand out (an update id again: a re-delivery)."""
        with self._lock:
            self.pending.extend(updates)

    def queue(self, *updates: dict[str, Any]) -> None:
        """Exactly these for getUpdates to hand out from now on, whatever was left unconfirmed
        (a poller stopped before its next call confirmed what it had)."""
        with self._lock:
            self.pending[:] = updates

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [call.payload for call in self.calls if call.method == method]

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> JSONResponse:
            token = request.path_params["token"]
            method = request.path_params["method"]
            if token != self.token:
                return JSONResponse(
                    {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
                )
            payload = await request.json() if await request.body() else {}
            failure = self.failure_for(method)
            if failure is not None:
                self.failed.append(ApiCall(token, method, payload))
                return JSONResponse(failure.body, failure.status)
            self.calls.append(ApiCall(token, method, payload))
            if method == "getUpdates":
                return JSONResponse({"ok": True, "result": await self.updates(payload)})
            return JSONResponse({"ok": True, "result": self.result(method, payload)})

        return Starlette(routes=[Route("/bot{token}/{method}", endpoint, methods=["POST"])])

    def failure_for(self, method: str) -> Failure | None:
        for failure in self.failures:
            if failure.method in (None, method):
                self.failures.remove(failure)
                return failure
        return None

    async def updates(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Forget what the offset confirms and hand out what is left, waiting a little for some.
        (Only the forgetting changes anything: a call whose client has gone, still waiting here
        when the next test starts, must not touch that test's updates.)"""
        offset = payload.get("offset") or 0
        with self._lock:
            self.pending[:] = [u for u in self.pending if u["update_id"] >= offset]
        deadline = time.monotonic() + min(float(payload.get("timeout", 0)), self.poll_wait)
        while True:
            with self._lock:
                left = [u for u in self.pending if u["update_id"] >= offset]
            if left or time.monotonic() >= deadline:
                return left[: payload.get("limit", 100)]
            await asyncio.sleep(0.01)

    def result(self, method: str, payload: dict[str, Any]) -> Any:
        if method == "getMe":
            return {"id": 1, "is_bot": True, "first_name": "Test", "username": "portabot_test_bot"}
        if method == "sendMessage":
            return {"message_id": len(self.calls), "chat": {"id": payload.get("chat_id")}}
        if method == "setWebhook":
            self.webhook_url = payload["url"]
        if method == "deleteWebhook":
            self.webhook_url = ""
        if method == "getWebhookInfo":
            return {"url": self.webhook_url, "pending_update_count": len(self.pending)}
        return True


@dataclass
class FakeVk:
    """A VK API that records every call and, like VK, drops a messages.send whose random_id it has
    seen for that peer; VK's error objects (with HTTP 200) can be queued."""

    token: str
    group_id: int
    confirmation: str = "c0nf1rm"
    calls: list[ApiCall] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def reset(self) -> None:
        self.calls.clear()
        self.dropped.clear()
        self.failures.clear()
        self.servers.clear()

    def fail_next(self, code: int = 10, times: int = 1, message: str = "Fake failure") -> None:
        self.failures.extend([{"error_code": code, "error_msg": message}] * times)

    def sent(self, method: str = "messages.send") -> list[dict[str, Any]]:
        return [call.payload for call in self.calls if call.method == method]

    def texts(self) -> list[tuple[str, str]]:
        """(peer_id, message) of every message VK delivered."""
        return [(p["peer_id"], p["message"]) for p in self.sent()]

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> JSONResponse:
            method = request.path_params["method"]
            params = dict(parse_qsl((await request.body()).decode()))
            token = params.pop("access_token", "")
            if token != self.token:
                error = {"error_code": 5, "error_msg": "User authorization failed"}
                return JSONResponse({"error": error})
            if self.failures:
                return JSONResponse({"error": self.failures.pop(0)})
            if method == "messages.send":
                key = (params["peer_id"], params["random_id"])
                if any((p["peer_id"], p["random_id"]) == key for p in self.sent()):
                    self.dropped.append(params)
                    return JSONResponse({"response": 0})
            self.calls.append(ApiCall(token, method, params))
            return JSONResponse({"response": self.result(method, params)})

        return Starlette(routes=[Route("/{method}", endpoint, methods=["POST"])])

    def result(self, method: str, params: dict[str, str]) -> Any:
        if method == "groups.getCallbackConfirmationCode":
            return {"code": self.confirmation}
        if method == "groups.getCallbackServers":
            return {"count": len(self.servers), "items": self.servers}
        if method == "groups.addCallbackServer":
            self.servers.append({"id": len(self.servers) + 1, **params})
            return {"server_id": len(self.servers)}
        if method == "messages.send":
            return len(self.calls)
        return 1


def wait_until_healthy(base_url: str, process: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Poll the bot's /healthz until it answers 200; fail if its process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass  # not listening yet, or 503 (an HTTPError) while the database comes up
        if process.poll() is not None:
            raise RuntimeError("the server exited before it answered /healthz")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not answer /healthz in time")
        time.sleep(0.1)
