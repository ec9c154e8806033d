"""Fake Telegram Bot API and VK API servers on loopback that record what they receive and answer
as the real APIs do (errors included), for a deployment's own integration tests (and the
project's): point TELEGRAM_API_URL or VK_API_URL at one's `url` and read back what the bot sent.
`ImageServer` serves a tiny PNG at any path and counts fetches, for replies carrying an image.
They need no pytest."""

from __future__ import annotations

import asyncio
import bisect
import email.parser
import email.policy
import json
import math
import re
import socket
import struct
import subprocess
import threading
import time
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

__all__ = [
    "ApiCall",
    "Failure",
    "FakeTelegram",
    "FakeVk",
    "ImageServer",
    "TelegramLimits",
    "TelegramMessage",
    "VkLimits",
    "VkMessage",
    "free_port",
    "png",
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


def in_window(times: list[float], span: float, now: float) -> int:
    """How many of the (sorted) times fall in the `span` seconds up to `now`: (now - span, now]."""
    return len(times) - bisect.bisect_right(times, now - span)


def busiest(times: list[float], span: float = 1.0) -> int:
    """The most of the (sorted) times that fall in any `span` seconds (a sliding window)."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - span:
            first += 1
        most = max(most, last - first + 1)
    return most


@dataclass(frozen=True)
class TelegramLimits:
    """The rate limits a FakeTelegram enforces when given them (`fake.limits = TelegramLimits()`),
    as Telegram documents them for messages (sendMessage, sendPhoto, the edits): a send beyond
    one is answered 429 with `parameters.retry_after`, as Telegram answers a flood."""

    per_second: int = 30
    """Messages of the bot in any sliding second, whichever chats they go to."""
    chat_per_second: float = 1.0
    chat_burst: int = 5
    """A private chat: a bucket of `chat_burst` messages refilled at `chat_per_second`."""
    group_per_minute: int = 20
    """A group, supergroup or channel (a chat id starting with - or @): in any sliding minute."""


@dataclass(frozen=True)
class VkLimits:
    """The rate limit a FakeVk enforces when given it (`fake.limits = VkLimits()`): API calls
    with the community's token in any sliding second; beyond, VK's error 6."""

    per_second: int = 20


MESSAGE_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "editMessageText", "editMessageCaption", "editMessageReplyMarkup"}
)
"""The Bot API methods Telegram's message limits count."""


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


def png() -> bytes:
    """A valid 1x1 PNG (one red pixel), built here so that no test needs an image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte 0, then R G B
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@dataclass
class ImageServer:
    """Serves `png()` at every path and counts the GETs per path, so a test can tell how often a
    platform (or the bot) fetched an image URL. Run it with `serve(server.app())`."""

    url: str = ""
    counts: Counter[str] = field(default_factory=Counter)

    def fetches(self, path: str) -> int:
        """How many times `path` (e.g. "/cat.png") was fetched."""
        return self.counts[path]

    def reset(self) -> None:
        self.counts.clear()

    def app(self) -> Starlette:
        image = png()

        async def endpoint(request: Request) -> Response:
            self.counts[request.url.path] += 1
            return Response(image, media_type="image/png")

        return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET"])])


class BadRequest(Exception):
    """A call Telegram refuses with 400; the argument is the description after "Bad Request: "."""


TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
TELEGRAM_CALLBACK_DATA_LIMIT = 64
TELEGRAM_NOTICE_LIMIT = 200
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the"
    " same as a current content and reply markup of the message"
)
WRONG_FILE = "wrong file identifier/HTTP URL specified"
TOO_OLD = "query is too old and response timeout expired or query ID is invalid"

# The tags of Telegram's HTML parse mode (Bot API "Formatting options") and the only named
# entities it knows; anything else is refused, so a bot that forgets to escape fails here too.
TELEGRAM_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a",
     "tg-spoiler", "span", "blockquote", "tg-emoji"}
)  # fmt: skip
TELEGRAM_ENTITIES = frozenset({"lt", "gt", "amp", "quot"})


class _TelegramHtml(HTMLParser):
    """Checks text in parse_mode HTML as Telegram does (balanced, supported tags, escaped
    `<`, `>`, `&`) and collects the plain text the person sees, whose length the limits count."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.open: list[str] = []
        self.plain: list[str] = []

    def fail(self, problem: str, extra: int = 0) -> BadRequest:
        line, column = self.getpos()
        chars = sum(len(text) for text in self.lines[: line - 1]) + column + extra
        offset = len(self.source[:chars].encode())
        return BadRequest(f"can't parse entities: {problem} at byte offset {offset}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if (
            tag not in TELEGRAM_TAGS
            or (tag == "a" and not attributes.get("href"))
            or (tag == "span" and attributes.get("class") != "tg-spoiler")
            or (tag == "tg-emoji" and not attributes.get("emoji-id"))
        ):
            raise self.fail(f'Unsupported start tag "{tag}"')
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise self.fail(f'Unsupported start tag "{tag}"')

    def handle_endtag(self, tag: str) -> None:
        if not self.open:
            raise self.fail("Unexpected end tag")
        if self.open[-1] != tag:
            raise self.fail(f'Unmatched end tag, expected "</{self.open[-1]}>", found "</{tag}>"')
        self.open.pop()

    def handle_data(self, data: str) -> None:
        for index, char in enumerate(data):
            if char in "<>&":
                raise self.fail(f'Unescaped "{char}"', index)
        self.plain.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in TELEGRAM_ENTITIES:
            raise self.fail(f'Unsupported HTML entity "&{name};"')
        self.plain.append(unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.plain.append(unescape(f"&#{name};"))

    def handle_comment(self, data: str) -> None:
        raise self.fail("Unsupported comment")

    def handle_decl(self, decl: str) -> None:
        raise self.fail("Unsupported declaration")

    def handle_pi(self, data: str) -> None:
        raise self.fail("Unsupported processing instruction")

    def unknown_decl(self, data: str) -> None:
        raise self.fail("Unsupported declaration")

    def check(self) -> str:
        self.feed(self.source)
        self.close()
        if self.open:
            raise BadRequest(
                "can't parse entities: Can't find end tag corresponding to start tag"
                f' "{self.open[-1]}"'
            )
        return "".join(self.plain)


def telegram_plain(text: str, parse_mode: str | None) -> str:
    """The text the person sees (what Telegram's limits count); a malformed HTML text is refused
    with Telegram's "can't parse entities". Markdown modes are taken as they are, unchecked."""
    if parse_mode is None or parse_mode == "":
        return text
    if parse_mode.lower() == "html":
        return _TelegramHtml(text).check()
    if parse_mode.lower() in ("markdown", "markdownv2"):
        return text
    raise BadRequest("unsupported parse_mode")


def inline_keyboard(markup: Any) -> dict[str, Any] | None:
    """`reply_markup` as Telegram reads it: a JSON object or its serialisation; an inline keyboard
    is checked button by button (text and exactly one of callback_data of 1-64 bytes or url)."""
    if markup is None:
        return None
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            raise BadRequest("can't parse reply keyboard markup JSON object") from None
    if not isinstance(markup, dict):
        raise BadRequest("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup  # a reply keyboard, remove_keyboard or force_reply: not checked
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise BadRequest('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for button in (button for row in rows for button in row):
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise BadRequest(
                'can\'t parse inline keyboard button: Field "text" must be of type String'
            )
        kinds = [kind for kind in ("callback_data", "url") if kind in button]
        if not kinds:
            raise BadRequest(
                "can't parse inline keyboard button:"
                " Text buttons are unallowed in the inline keyboard"
            )
        if len(kinds) > 1:
            raise BadRequest(
                "can't parse inline keyboard button:"
                " exactly one of callback_data and url is allowed"
            )
        data = button.get("callback_data")
        if "callback_data" in button and (
            not isinstance(data, str) or not 1 <= len(data.encode()) <= TELEGRAM_CALLBACK_DATA_LIMIT
        ):
            raise BadRequest("BUTTON_DATA_INVALID")
        url = button.get("url")
        if "url" in button and (
            not isinstance(url, str) or not url.startswith(("http://", "https://", "tg://"))
        ):
            raise BadRequest(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
    return markup


def fetch_image(url: str) -> bool:
    """Whether `url` answers 200 with an image, as Telegram checks a photo given by URL."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            kind: str = response.headers.get("Content-Type", "")
            response.read()
            return response.status == 200 and kind.startswith("image/")
    except OSError:
        return False


@dataclass
class TelegramMessage:
    """A message the fake "sent", as it stands now (after edits)."""

    chat_id: str
    message_id: int
    text: str | None = None
    """The text as the bot sent it (markup included, in its parse_mode); None for a photo."""
    caption: str | None = None
    photo: str | None = None
    """The URL or file id the photo was sent with."""
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    edits: int = 0
    file_id: str | None = None

    def api(self, plain: str, edited: bool = False) -> dict[str, Any]:
        """The Message object the Bot API answers with (text/caption without the markup)."""
        chat_type = "private" if not self.chat_id.startswith(("-", "@")) else "supergroup"
        chat: int | str = int(self.chat_id) if self.chat_id.lstrip("-").isdigit() else self.chat_id
        message: dict[str, Any] = {
            "message_id": self.message_id,
            "from": BOT_USER,
            "chat": {"id": chat, "type": chat_type},
            "date": int(time.time()),
        }
        if self.photo is None:
            message["text"] = plain
        else:
            size = {
                "file_id": self.file_id,
                "file_unique_id": self.file_id,
                "width": 1,
                "height": 1,
            }
            message["photo"] = [size]
            if plain:
                message["caption"] = plain
        if self.reply_markup is not None:
            message["reply_markup"] = self.reply_markup
        if edited:
            message["edit_date"] = int(time.time())
        return message


BOT_USER = {"id": 1, "is_bot": True, "first_name": "Test", "username": "portabot_test_bot"}


@dataclass
class FakeTelegram:
    """A Bot API that records every call and answers as Telegram does; failures can be queued.
    For long polling it keeps the updates given to `push` until a getUpdates call's offset passes
    them, as Telegram does, and holds a getUpdates with nothing to give for at most `poll_wait`
    seconds of the timeout asked for.

    It remembers what it sent (`messages(chat_id)`), so edits answer as Telegram's do, and refuses
    what Telegram refuses (too long, malformed HTML, a bad inline keyboard) with Telegram's 400;
    those calls go to `refused`, not `calls`. A photo by URL is fetched only when `photo_hosts`
    maps the URL's prefix to a loopback server (e.g. an `ImageServer`); unmapped, it is refused."""

    token: str
    calls: list[ApiCall] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    failed: list[ApiCall] = field(default_factory=list)
    """Calls answered with a queued failure."""
    refused: list[tuple[ApiCall, str]] = field(default_factory=list)
    """Calls refused as Telegram would, with the description answered."""
    pending: list[dict[str, Any]] = field(default_factory=list)
    webhook_url: str = ""
    poll_wait: float = 0.5
    url: str = ""
    photo_hosts: dict[str, str] = field(default_factory=dict)
    """URL prefix -> loopback prefix to fetch photos from, e.g.
    {"https://img.example/": "http://127.0.0.1:8001/"}. Empty: photo URLs are taken unfetched."""
    chats: dict[str, dict[int, TelegramMessage]] = field(default_factory=dict)
    limits: TelegramLimits | None = None
    """Rate limits to enforce (None, the default: none)."""
    throttled: list[ApiCall] = field(default_factory=list)
    """Calls answered 429 because they went beyond `limits`."""
    send_times: list[float] = field(default_factory=list)
    """When (time.monotonic) each message call within the limits arrived, while they are on."""
    _chat_times: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        self.calls.clear()
        self.failures.clear()
        self.failed.clear()
        self.refused.clear()
        self.limits = None
        self.throttled.clear()
        self.send_times.clear()
        self._chat_times.clear()
        self._buckets.clear()
        with self._lock:
            self.pending.clear()
        self.webhook_url = ""
        self.photo_hosts.clear()
        self.chats.clear()

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

    def messages(self, chat_id: int | str) -> list[TelegramMessage]:
        """The messages sent to a chat, oldest first, each as it stands after any edits."""
        return sorted(self.chats.get(str(chat_id), {}).values(), key=lambda m: m.message_id)

    def answers(self) -> list[dict[str, Any]]:
        """The answerCallbackQuery calls accepted (callback_query_id, text, show_alert)."""
        return self.sent("answerCallbackQuery")

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> JSONResponse:
            token = request.path_params["token"]
            method = request.path_params["method"]
            if token != self.token:
                return JSONResponse(
                    {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
                )
            payload = await self.parameters(request)
            failure = self.failure_for(method)
            if failure is not None:
                self.failed.append(ApiCall(token, method, payload))
                return JSONResponse(failure.body, failure.status)
            wait = self.over_limits(method, str(payload.get("chat_id", "")), time.monotonic())
            if wait is not None:
                self.throttled.append(ApiCall(token, method, payload))
                description = f"Too Many Requests: retry after {wait}"
                body = {"ok": False, "error_code": 429, "description": description}
                return JSONResponse({**body, "parameters": {"retry_after": wait}}, 429)
            if method == "getUpdates":
                self.calls.append(ApiCall(token, method, payload))
                return JSONResponse({"ok": True, "result": await self.updates(payload)})
            try:
                result = await self.result(method, payload)
            except BadRequest as refusal:
                self.refused.append((ApiCall(token, method, payload), str(refusal)))
                description = f"Bad Request: {refusal}"
                return JSONResponse(
                    {"ok": False, "error_code": 400, "description": description}, 400
                )
            self.calls.append(ApiCall(token, method, payload))
            return JSONResponse({"ok": True, "result": result})

        return Starlette(routes=[Route("/bot{token}/{method}", endpoint, methods=["POST"])])

    @staticmethod
    async def parameters(request: Request) -> dict[str, Any]:
        """A call's parameters, sent as JSON or as a urlencoded form (as Telegram takes both)."""
        body = await request.body()
        if not body:
            return {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(body.decode()))
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    def fastest_second(self) -> int:
        """The most message calls that arrived within the limits in any sliding second."""
        return busiest(self.send_times)

    def over_limits(self, method: str, chat_id: str, now: float) -> int | None:
        """With limits on, whether a message call now goes beyond one: the seconds to retry
        after (None: within them, and counted)."""
        limits = self.limits
        if limits is None or method not in MESSAGE_METHODS:
            return None
        waits = []
        if in_window(self.send_times, 1.0, now) >= limits.per_second:
            oldest = self.send_times[-limits.per_second]
            waits.append(oldest + 1.0 - now)
        chat = self._chat_times.setdefault(chat_id, [])
        if chat_id.startswith(("-", "@")):
            if in_window(chat, 60.0, now) >= limits.group_per_minute:
                waits.append(chat[-limits.group_per_minute] + 60.0 - now)
        else:
            tokens, then = self._buckets.get(chat_id, (float(limits.chat_burst), now))
            tokens = min(float(limits.chat_burst), tokens + (now - then) * limits.chat_per_second)
            if tokens < 1.0:
                waits.append((1.0 - tokens) / limits.chat_per_second)
            else:
                self._buckets[chat_id] = (tokens - 1.0, now)
        if waits:
            return max(1, math.ceil(max(waits)))
        self.send_times.append(now)
        chat.append(now)
        return None

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

    async def result(self, method: str, payload: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "sendMessage":
            return self.send_message(payload)
        if method == "sendPhoto":
            return await self.send_photo(payload)
        if method in ("editMessageText", "editMessageCaption", "editMessageReplyMarkup"):
            return self.edit(method, payload)
        if method == "answerCallbackQuery":
            return self.answer_callback_query(payload)
        if method == "setWebhook":
            self.webhook_url = payload["url"]
        if method == "deleteWebhook":
            self.webhook_url = ""
        if method == "getWebhookInfo":
            return {"url": self.webhook_url, "pending_update_count": len(self.pending)}
        return True

    def new_message(self, payload: dict[str, Any]) -> TelegramMessage:
        chat_id = payload.get("chat_id")
        if chat_id in (None, ""):
            raise BadRequest("chat not found")
        chat = self.chats.setdefault(str(chat_id), {})
        message = TelegramMessage(str(chat_id), len(chat) + 1)
        chat[message.message_id] = message
        return message

    def send_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        text = str(payload.get("text") or "")
        parse_mode = payload.get("parse_mode")
        plain = telegram_plain(text, parse_mode)
        if not plain.strip():
            raise BadRequest("message text is empty")
        if len(plain) > TELEGRAM_TEXT_LIMIT:
            raise BadRequest("message is too long")
        markup = inline_keyboard(payload.get("reply_markup"))
        message = self.new_message(payload)
        message.text, message.parse_mode, message.reply_markup = text, parse_mode, markup
        return message.api(plain)

    async def send_photo(self, payload: dict[str, Any]) -> dict[str, Any]:
        caption = str(payload.get("caption") or "")
        parse_mode = payload.get("parse_mode")
        plain = telegram_plain(caption, parse_mode)
        if len(plain) > TELEGRAM_CAPTION_LIMIT:
            raise BadRequest("message caption is too long")
        markup = inline_keyboard(payload.get("reply_markup"))
        photo = payload.get("photo")
        if not isinstance(photo, str) or not photo:
            raise BadRequest("there is no photo in the request")
        known = any(m.file_id == photo for chat in self.chats.values() for m in chat.values())
        if not known and not await self.fetchable(photo):
            raise BadRequest(WRONG_FILE)
        message = self.new_message(payload)
        message.photo, message.caption = photo, caption
        message.parse_mode, message.reply_markup = parse_mode, markup
        message.file_id = f"fake-photo-{message.chat_id}-{message.message_id}"
        return message.api(plain)

    async def fetchable(self, url: str) -> bool:
        """A photo URL Telegram could fetch: any http(s) URL when no `photo_hosts` are set, else
        one under a mapped prefix whose loopback counterpart answers with an image."""
        if not url.startswith(("https://", "http://")):
            return False
        if not self.photo_hosts:
            return True
        for prefix, local in self.photo_hosts.items():
            if url.startswith(prefix):
                return await asyncio.to_thread(fetch_image, local + url[len(prefix) :])
        return False

    def edit(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """editMessageText / editMessageCaption / editMessageReplyMarkup of a message this fake
        sent; the same content and markup again is Telegram's "message is not modified". A markup
        left out removes the keyboard, as on Telegram."""
        chat = self.chats.get(str(payload.get("chat_id")), {})
        message = chat.get(int(payload.get("message_id") or 0))
        if message is None:
            raise BadRequest("message to edit not found")
        markup = inline_keyboard(payload.get("reply_markup"))
        text, caption, parse_mode = message.text, message.caption, message.parse_mode
        if method == "editMessageText":
            if message.text is None:
                raise BadRequest("there is no text in the message to edit")
            text, parse_mode = str(payload.get("text") or ""), payload.get("parse_mode")
            plain = telegram_plain(text, parse_mode)
            if not plain.strip():
                raise BadRequest("message text is empty")
            if len(plain) > TELEGRAM_TEXT_LIMIT:
                raise BadRequest("message is too long")
        elif method == "editMessageCaption":
            if message.photo is None:
                raise BadRequest("there is no caption in the message to edit")
            caption, parse_mode = str(payload.get("caption") or ""), payload.get("parse_mode")
            plain = telegram_plain(caption, parse_mode)
            if len(plain) > TELEGRAM_CAPTION_LIMIT:
                raise BadRequest("message caption is too long")
        else:
            plain = telegram_plain(message.text or message.caption or "", parse_mode)
        before = (message.text, message.caption, message.parse_mode, message.reply_markup)
        if (text, caption, parse_mode, markup) == before:
            raise BadRequest(NOT_MODIFIED)
        message.text, message.caption, message.parse_mode = text, caption, parse_mode
        message.reply_markup = markup
        message.edits += 1
        return message.api(plain, edited=True)

    def answer_callback_query(self, payload: dict[str, Any]) -> bool:
        """Each press is answered once: an unknown-looking or already answered id is refused as
        Telegram refuses an expired one."""
        query = payload.get("callback_query_id")
        if not query or any(a.get("callback_query_id") == query for a in self.answers()):
            raise BadRequest(TOO_OLD)
        if len(str(payload.get("text") or "")) > TELEGRAM_NOTICE_LIMIT:
            raise BadRequest("MESSAGE_TOO_LONG")
        return True


class VkError(Exception):
    """A call VK refuses: its error code and message (VK answers them with HTTP 200)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message


VK_TEXT_LIMIT = 4096
VK_LABEL_LIMIT = 40
VK_PAYLOAD_LIMIT = 255
VK_SNACKBAR_LIMIT = 90
VK_CHATS = 2_000_000_000
"""Peer ids from here on are group chats, where a community's messages.send with peer_id
answers 0 instead of the message id (peer_ids answers the conversation_message_id)."""
VK_BUTTON_TYPES = frozenset({"text", "callback", "open_link", "location", "vkpay", "open_app"})
VK_ATTACHMENT = re.compile(r"[a-z]+-?[0-9]+_[0-9]+(_[0-9A-Za-z]+)?")
VK_COLORS = frozenset({"primary", "secondary", "negative", "positive"})
# (rows, buttons per row, buttons in all) for the inline and the standard keyboard (VK's
# "Keyboard" page for bots).
VK_INLINE_GRID = (6, 5, 10)
VK_STANDARD_GRID = (10, 5, 40)


def invalid(detail: str) -> VkError:
    return VkError(100, f"One of the parameters specified was missing or invalid: {detail}")


def vk_keyboard(raw: str | None) -> dict[str, Any] | None:
    """messages.send's `keyboard` checked as VK checks it; a wrong shape is VK's error 911."""
    if raw is None:
        return None
    try:
        keyboard = json.loads(raw)
    except ValueError:
        raise invalid("keyboard contains incorrect JSON") from None

    def bad(detail: str) -> VkError:
        return VkError(911, f"Keyboard format is invalid: {detail}")

    if not isinstance(keyboard, dict) or not isinstance(keyboard.get("buttons"), list):
        raise bad("buttons should be array")
    rows: list[Any] = keyboard["buttons"]
    inline = bool(keyboard.get("inline"))
    most_rows, per_row, in_all = VK_INLINE_GRID if inline else VK_STANDARD_GRID
    if len(rows) > most_rows:
        raise bad(f"too many rows (at most {most_rows})")
    if sum(len(row) for row in rows if isinstance(row, list)) > in_all:
        raise bad(f"too many buttons (at most {in_all})")
    for r, row in enumerate(rows):
        if not isinstance(row, list):
            raise bad(f"row {r} should be array")
        if len(row) > per_row:
            raise bad(f"row {r} contains too much columns")
        for c, button in enumerate(row):
            action = button.get("action") if isinstance(button, dict) else None
            where = f"button [{r}][{c}]"
            if not isinstance(action, dict) or action.get("type") not in VK_BUTTON_TYPES:
                raise bad(f"{where} action type is invalid")
            if "color" in button and button["color"] not in VK_COLORS:
                raise bad(f"{where} color is invalid")
            if action["type"] in ("text", "callback", "open_link"):
                label = action.get("label")
                if not isinstance(label, str) or not 1 <= len(label) <= VK_LABEL_LIMIT:
                    raise bad(f"{where} label should be 1 to {VK_LABEL_LIMIT} letters length")
            if action["type"] == "open_link" and not str(action.get("link", "")).startswith(
                ("https://", "http://")
            ):
                raise bad(f"{where} link is invalid")
            if "payload" in action:
                payload = action["payload"]
                if not isinstance(payload, str) or len(payload) > VK_PAYLOAD_LIMIT:
                    raise bad(f"{where} payload should be a string of at most {VK_PAYLOAD_LIMIT}")
                try:
                    json.loads(payload)
                except ValueError:
                    raise bad(f"{where} payload should be JSON") from None
    return keyboard


def vk_attachment(raw: str | None) -> str:
    """`attachment` as VK reads it: comma-separated `<type><owner_id>_<id>[_<access_key>]`."""
    for item in filter(None, (raw or "").split(",")):
        if not VK_ATTACHMENT.fullmatch(item):
            raise invalid(f"attachment {item!r} is invalid")
    return raw or ""


@dataclass
class VkMessage:
    """A message the fake VK sent, as it stands now (after edits)."""

    peer_id: int
    message_id: int
    conversation_message_id: int
    text: str
    keyboard: dict[str, Any] | None
    attachment: str
    edits: int = 0


@dataclass
class FakeVk:
    """A VK API that records every call and, like VK, drops a messages.send whose random_id it has
    seen for that peer; VK's error objects (with HTTP 200) can be queued.

    It remembers what it sent (`messages(peer_id)`) so that messages.edit answers as VK does,
    refuses what VK refuses (a bad keyboard: 911; too long: 914) into `refused`, and runs VK's
    photo upload chain on its own loopback upload URL (`uploads()`)."""

    token: str
    group_id: int
    confirmation: str = "c0nf1rm"
    calls: list[ApiCall] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[ApiCall, VkError]] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    peers: dict[int, dict[int, VkMessage]] = field(default_factory=dict)
    """peer_id -> conversation_message_id -> the message."""
    uploaded: list[bytes] = field(default_factory=list)
    """The photos POSTed to the upload URL, in order."""
    saved: list[dict[str, Any]] = field(default_factory=list)
    """The photos saved with photos.saveMessagesPhoto."""
    limits: VkLimits | None = None
    """The rate limit to enforce (None, the default: none)."""
    throttled: list[ApiCall] = field(default_factory=list)
    """Calls answered with error 6 because they went beyond `limits`."""
    call_times: list[float] = field(default_factory=list)
    """When (time.monotonic) each call within the limit arrived, while it is on."""

    def reset(self) -> None:
        self.limits = None
        self.throttled.clear()
        self.call_times.clear()
        self.calls.clear()
        self.dropped.clear()
        self.failures.clear()
        self.refused.clear()
        self.servers.clear()
        self.peers.clear()
        self.uploaded.clear()
        self.saved.clear()

    def fail_next(self, code: int = 10, times: int = 1, message: str = "Fake failure") -> None:
        self.failures.extend([{"error_code": code, "error_msg": message}] * times)

    def sent(self, method: str = "messages.send") -> list[dict[str, Any]]:
        return [call.payload for call in self.calls if call.method == method]

    def fastest_second(self) -> int:
        """The most calls that arrived within the limit in any sliding second."""
        return busiest(self.call_times)

    def over_limit(self, now: float) -> bool:
        """With the limit on, whether a call now goes beyond it (if not, it is counted)."""
        if self.limits is None:
            return False
        if in_window(self.call_times, 1.0, now) >= self.limits.per_second:
            return True
        self.call_times.append(now)
        return False

    def texts(self) -> list[tuple[str, str]]:
        """(peer_id, message) of every message VK delivered."""
        return [(p["peer_id"], p.get("message", "")) for p in self.sent() if "peer_id" in p]

    def messages(self, peer_id: int | str) -> list[VkMessage]:
        """The messages sent to a peer, oldest first, each as it stands after any edits."""
        sent = self.peers.get(int(peer_id), {})
        return [sent[number] for number in sorted(sent)]

    def uploads(self) -> int:
        """How many photos were uploaded (a bot should upload each image URL once)."""
        return len(self.uploaded)

    def snackbars(self) -> list[str]:
        """The texts of the snackbars shown with messages.sendMessageEventAnswer."""
        shown = []
        for answer in self.sent("messages.sendMessageEventAnswer"):
            data = json.loads(answer.get("event_data") or "{}")
            if data.get("type") == "show_snackbar":
                shown.append(data["text"])
        return shown

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
            if self.over_limit(time.monotonic()):
                self.throttled.append(ApiCall(token, method, params))
                error = {"error_code": 6, "error_msg": "Too many requests per second"}
                return JSONResponse({"error": error})
            if method == "messages.send" and self.repeated(params):
                self.dropped.append(params)
                return JSONResponse({"response": 0})
            call = ApiCall(token, method, params)
            try:
                result = self.result(method, params, f"{request.base_url}upload/photo")
            except VkError as error:
                self.refused.append((call, error))
                request_params = [{"key": k, "value": v} for k, v in params.items()]
                body = {"error_code": error.code, "error_msg": error.message}
                return JSONResponse({"error": {**body, "request_params": request_params}})
            self.calls.append(call)
            return JSONResponse({"response": result})

        async def upload(request: Request) -> JSONResponse:
            photo = multipart_file(
                request.headers.get("content-type", ""), await request.body(), "photo"
            )
            if photo is None:
                return JSONResponse({"server": 1, "photo": "[]", "hash": ""})
            self.uploaded.append(photo)
            number = len(self.uploaded)
            return JSONResponse(
                {"server": 1, "photo": json.dumps([{"photo": f"p{number}"}]), "hash": f"h{number}"}
            )

        return Starlette(
            routes=[
                Route("/upload/photo", upload, methods=["POST"]),
                Route("/{method}", endpoint, methods=["POST"]),
            ]
        )

    def repeated(self, params: dict[str, str]) -> bool:
        key = (params.get("peer_id", params.get("peer_ids")), params.get("random_id"))
        return key[1] not in (None, "0") and any(
            (p.get("peer_id", p.get("peer_ids")), p.get("random_id")) == key for p in self.sent()
        )

    def result(self, method: str, params: dict[str, str], upload_url: str) -> Any:
        if method == "groups.getCallbackConfirmationCode":
            return {"code": self.confirmation}
        if method == "groups.getCallbackServers":
            return {"count": len(self.servers), "items": self.servers}
        if method == "groups.addCallbackServer":
            self.servers.append({"id": len(self.servers) + 1, **params})
            return {"server_id": len(self.servers)}
        if method == "messages.send":
            return self.send(params)
        if method == "messages.edit":
            return self.edit(params)
        if method == "messages.sendMessageEventAnswer":
            return self.event_answer(params)
        if method == "photos.getMessagesUploadServer":
            return {"upload_url": upload_url, "album_id": -3, "group_id": self.group_id}
        if method == "photos.saveMessagesPhoto":
            return self.save_photo(params)
        return 1

    @staticmethod
    def content(params: dict[str, str]) -> tuple[str, dict[str, Any] | None, str]:
        text = params.get("message", "")
        if len(text) > VK_TEXT_LIMIT:
            raise VkError(914, "Message is too long")
        keyboard = vk_keyboard(params.get("keyboard"))
        attachment = vk_attachment(params.get("attachment"))
        if not text and not attachment:
            raise invalid("message is empty or invalid")
        return text, keyboard, attachment

    def send(self, params: dict[str, str]) -> Any:
        """The message id for `peer_id` (0 in a group chat, as VK answers a community there); for
        `peer_ids` a list of {peer_id, message_id, conversation_message_id}."""
        text, keyboard, attachment = self.content(params)
        many = "peer_ids" in params
        targets = params.get("peer_ids") if many else params.get("peer_id", params.get("user_id"))
        if not targets:
            raise invalid("you should specify peer_id, user_id, domain, chat_id or user_ids param")
        sent = []
        for peer in (int(p) for p in targets.split(",")):
            conversation = self.peers.setdefault(peer, {})
            number = len(conversation) + 1
            message_id = sum(len(c) for c in self.peers.values()) + 1
            conversation[number] = VkMessage(peer, message_id, number, text, keyboard, attachment)
            sent.append(
                {"peer_id": peer, "message_id": message_id, "conversation_message_id": number}
            )
        if many:
            return sent
        return 0 if sent[0]["peer_id"] >= VK_CHATS else sent[0]["message_id"]

    def edit(self, params: dict[str, str]) -> int:
        """messages.edit by conversation_message_id or message_id; a message this fake did not
        send is VK's "Access denied" (15). A keyboard left out removes it."""
        conversation = self.peers.get(int(params.get("peer_id") or 0), {})
        if "conversation_message_id" in params:
            message = conversation.get(int(params["conversation_message_id"]))
        else:
            wanted = int(params.get("message_id") or 0)
            message = next((m for m in conversation.values() if m.message_id == wanted), None)
        if message is None:
            raise VkError(15, "Access denied")
        message.text, message.keyboard, message.attachment = self.content(params)
        message.edits += 1
        return 1

    @staticmethod
    def event_answer(params: dict[str, str]) -> int:
        if not all(params.get(key) for key in ("event_id", "user_id", "peer_id")):
            raise invalid("event_id, user_id and peer_id are required")
        if "event_data" in params:
            try:
                data = json.loads(params["event_data"])
            except ValueError:
                raise invalid("event_data contains incorrect JSON") from None
            if not isinstance(data, dict) or data.get("type") not in (
                "show_snackbar",
                "open_link",
                "open_app",
            ):
                raise invalid("event_data type is invalid")
            text = data.get("text")
            if data["type"] == "show_snackbar" and (
                not isinstance(text, str) or not 1 <= len(text) <= VK_SNACKBAR_LIMIT
            ):
                raise invalid(f"event_data text should be 1 to {VK_SNACKBAR_LIMIT} characters")
        return 1

    def save_photo(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Saves an upload this fake answered (its photo and hash); answers VK's photo object."""
        number = next(
            (
                n
                for n in range(1, len(self.uploaded) + 1)
                if params.get("hash") == f"h{n}"
                and params.get("photo") == json.dumps([{"photo": f"p{n}"}])
            ),
            None,
        )
        if number is None:
            raise invalid("photos_list is invalid")
        photo = {
            "id": 456239000 + len(self.saved) + 1,
            "album_id": -3,
            "owner_id": -self.group_id,
            "date": int(time.time()),
            "access_key": f"k{number}",
            "sizes": [
                {"type": "s", "width": 1, "height": 1, "url": f"https://vk.example/p{number}.png"}
            ],
        }
        self.saved.append(photo)
        return [photo]


def multipart_file(content_type: str, body: bytes, name: str) -> bytes | None:
    """The bytes of the file field `name` in a multipart/form-data body (stdlib only)."""
    if not content_type.startswith("multipart/form-data"):
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == name:
            data = part.get_payload(decode=True)
            return data if isinstance(data, bytes) and data else None
    return None


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
