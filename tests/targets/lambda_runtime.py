"""A Lambda execution environment for the tests: the handler loaded from its file, the events
of each way of putting a function on the web, and responses read back as HTTP."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from portabot.storage.database import Database

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
HANDLER = ROOT / "targets" / "lambda" / "handler.py"
TEMPLATE = ROOT / "targets" / "lambda" / "template.yaml"
EVENTS = Path(__file__).with_name("events")
SHAPES = ["function_url", "http_api", "rest_api", "alb"]
"""One stored event per way of putting the function on the web (tests/targets/events/*.json):
a Telegram update (/start, update 846512001) delivered to /webhooks/telegram. The REST API's is
base64-encoded, as API Gateway sends every body when binary media types are */*."""
UPDATE_CHAT = 5123456789
REQUEST_HEADERS = {"content-type", "content-length", "x-telegram-bot-api-secret-token", "cookie"}
NOT_FOR_USERS = {
    "database_pool_size",
    "telegram_api_url",
    "vk_api_url",
    "vk_api_version",
    "vk_image_hosts",
    "tick_seconds",
    "send_pacing",
    "access_log",
}
"""Set by the handler, or only changed by tests; TICK_SECONDS, a server's own loop, which
Lambda never starts (the Tick rule runs what is due instead); and ACCESS_LOG, a server's line
per request (Lambda writes its own per invocation)."""


@dataclass
class LambdaContext:
    function_name: str = "portabot"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:portabot"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "8f5c3a52-4f0e-4e4c-9d3b-2f1e0d9c8b7a"
    log_group_name: str = "/aws/lambda/portabot"
    log_stream_name: str = "2026/11/24/[$LATEST]0123456789abcdef"
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def load_handler() -> ModuleType:
    """targets/lambda/handler.py imported from its file, as Lambda imports `handler.handler`."""
    spec = importlib.util.spec_from_file_location("handler", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Container:
    """One Lambda execution environment: a thread of its own imports the handler once, then runs
    invocations one after another. (The tests' own asyncio.run calls clear the main thread's
    event loop, which nothing does in a real container.)"""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda")
        self.module: ModuleType = self.run(load_handler)

    def run(self, function: Callable[..., T], *args: Any) -> T:
        return self._thread.submit(function, *args).result(timeout=60)

    def run_async(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """A coroutine on the container's event loop, the one Mangum runs the app on."""
        return self.run(lambda: asyncio.get_event_loop().run_until_complete(make()))

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.run(self.module.handler, event, LambdaContext())
        return response

    @property
    def db(self) -> Database:
        database: Database = self.module.app.state.bot.db
        return database

    def close(self) -> None:
        try:
            self.run_async(self.module.app.state.bot.close)
            self.run(lambda: asyncio.get_event_loop().close())
        finally:
            self._thread.shutdown()


def stored_event(shape: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{shape}.json").read_text())
    return event


def request(
    shape: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
) -> dict[str, Any]:
    """Another request to the same function, in the shape of the stored event."""
    event = stored_event(shape)
    kept = {k: v for k, v in event["headers"].items() if k.lower() not in REQUEST_HEADERS}
    headers = {**kept, **(headers or {})}
    if body:
        headers["content-length"] = str(len(body))
    event["isBase64Encoded"] = encoded = bool(body) and event["isBase64Encoded"]
    event["body"] = base64.b64encode(body).decode() if encoded else body.decode()
    if shape in ("function_url", "http_api"):
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["headers"] = {k.lower(): v for k, v in headers.items()}
        if cookies:
            event["cookies"] = cookies
        return event
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    event["path"] = path
    event["httpMethod"] = method
    event["headers"] = headers
    if shape == "rest_api":
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
        event["requestContext"]["httpMethod"] = method
        event["pathParameters"] = {"proxy": path.lstrip("/")}
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    return event


def with_secret(event: dict[str, Any], secret: str) -> dict[str, Any]:
    for headers in (event["headers"], event.get("multiValueHeaders") or {}):
        for name in headers:
            if name.lower() == "x-telegram-bot-api-secret-token":
                headers[name] = [secret] if isinstance(headers[name], list) else secret
    return event


@dataclass
class Answer:
    """A Lambda response of any shape, read back as HTTP."""

    status: int
    body: bytes
    headers: dict[str, str]
    cookies: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, response: dict[str, Any]) -> Answer:
        raw = response.get("body") or ""
        body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        cookies = list(response.get("cookies") or [])
        for name, values in (response.get("multiValueHeaders") or {}).items():
            if name.lower() == "set-cookie":
                cookies += values
            else:
                headers[name.lower()] = ", ".join(values)
        if "set-cookie" in headers:
            cookies.append(headers.pop("set-cookie"))
        return cls(response["statusCode"], body, headers, cookies)

    def json(self) -> Any:
        return json.loads(self.body)


def say_web(container: Container, shape: str, text: str, cookies: list[str]) -> list[str]:
    """A web chat message; keeps the visitor's cookie in `cookies` as a browser would."""
    body = json.dumps({"text": text}).encode()
    headers = {"content-type": "application/json"}
    event = request(shape, "POST", "/webhooks/web", body, headers, cookies)
    answer = Answer.of(container.invoke(event))
    assert answer.status == 200, answer.body
    if answer.cookies:
        cookies[:] = [cookie.split(";")[0] for cookie in answer.cookies]
    replies: list[str] = answer.json()["texts"]
    return replies
