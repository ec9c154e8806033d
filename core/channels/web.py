"""The web chat: `POST /webhooks/web` with {"text": ...} or a button's press {"payload": ...,
"message": <the pressed bubble's id>}; a signed HttpOnly cookie names the person, and limits in
the database bound what a stranger's traffic can make us store. The answer is
{"replies": [bubble, ...], "texts": [...], "notice"?: ...}: each bubble as the page renders it
(its HTML rendered here, escaped), see `bubble`. `POST /webhooks/web/inbox` with `{}` collects
what waits for the cookie's visitor in the inbox (core/storage/inbox.py), in the same shape."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import time
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, TimestampSigner
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from portabot.channels.base import (
    Answered,
    Rejected,
    clean_text,
    first_error,
    read_json,
    read_model,
)
from portabot.messages import Account, Delivery, Kind, Message, Press, Update, parse_command
from portabot.replies import MAX_PAYLOAD
from portabot.storage.inbox import collect_inbox
from portabot.storage.keys import kept_secret
from portabot.storage.limits import Limit, hit_now

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from portabot.channels.base import ApiError
    from portabot.settings import Settings
    from portabot.storage.database import Database
    from portabot.storage.pacing import Pace

COOKIE = "portabot_web"
"""The cookie's name over plain HTTP (localhost): browsers refuse `__Host-` without Secure."""
SECURE_COOKIE = f"__Host-{COOKIE}"
"""Over HTTPS: Secure, Path=/ and no Domain, so no other site or subdomain can set it."""
SALT = "portabot web chat, timestamped"
"""A new salt and digest (SHA-256): a cookie signed before (HMAC-SHA1, no time) is a new visitor."""
DAY = 86_400.0
REMEMBERED = 10_000
"""Refused keys a process remembers at most (a flood from many addresses can't fill memory)."""
MAX_TEXT = 4096
MAX_BODY = 64 * 1024
MAX_BUBBLE_ID = 100
"""Characters of a pressed bubble's id (ours are `<update id>:<position>`, under 50)."""
INBOX_PER_ADDRESS = 60
"""Inbox collections a minute from one address: the page polls every 5 s at most while it is
visible, so a few tabs (or a few people behind one address) fit."""
MAX_INBOX_BODY = 1024
"""Bytes of a collection's body (it is `{}`)."""
NOT_STORED = {"Cache-Control": "no-store"}
"""A collection's answer is the visitor's and is shown once: no cache keeps it."""
PRESS_ANSWER = "web"
"""Press.answer of every press on the page: the answer delivery carries the notice back."""


class WebMessage(BaseModel):
    """A text ({"text"}) or a press of a bubble's button ({"payload", "message"}), with an
    optional client-made id."""

    model_config = ConfigDict(strict=True, extra="forbid")

    text: str | None = Field(default=None, max_length=MAX_TEXT)
    payload: str | None = Field(default=None, min_length=1)
    """A button's payload (untrusted, as on every platform: the flow checks it)."""
    message: str | None = Field(
        default=None, min_length=1, max_length=MAX_BUBBLE_ID, pattern=r"^[\x21-\x7e]+$"
    )
    """The pressed bubble's id (the `id` of a reply we sent): what an edit replaces."""
    id: str | None = Field(default=None, min_length=1, max_length=64)
    """Optional client-made id: a retried POST with the same id is processed once."""

    @field_validator("payload")
    @classmethod
    def _payload_fits(cls, payload: str | None) -> str | None:
        if payload is not None and len(payload.encode("utf-8", "replace")) > MAX_PAYLOAD:
            raise ValueError(f"a button's payload is at most {MAX_PAYLOAD} bytes of UTF-8")
        return payload

    @model_validator(mode="after")
    def _text_or_press(self) -> WebMessage:
        if (self.text is None) == (self.payload is None):
            raise ValueError('give "text" (a message) or "payload" (a press), one of them')
        if self.message is not None and self.payload is None:
            raise ValueError('"message" names the bubble of a press: it goes with "payload"')
        return self


def client_address(scope: Scope, host: str | None) -> str:
    """The address a request came from, as the proxy in front of `host` saw it (an IPv6 address
    as its /64, which one subscriber usually holds whole); never a header the client wrote."""
    address = ""
    if host == "heroku":
        # Heroku's router appends the address it saw to X-Forwarded-For; what comes before is
        # the client's own to write (and uvicorn, trusting "*", takes the first entry).
        forwarded = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for")
        address = forwarded.decode("latin-1").rpartition(",")[2].strip()
    if not address:
        # Lambda: Mangum's client is the request context's sourceIp (an ALB's whole
        # X-Forwarded-For, to which the ALB appended). VPS: uvicorn's, from Caddy's
        # X-Forwarded-For, believed from loopback only (gunicorn's forwarded_allow_ips).
        client = scope.get("client")
        address = str(client[0]).rpartition(",")[2].strip() if client else ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:60] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class WebChannel:
    platform = "web"
    inline_replies = None
    redelivers = False  # a page that got no answer shows an error; nothing sends the message again
    in_order = False
    max_text: int | None = None
    max_caption: int | None = None

    def __init__(self, db: Database, settings: Settings, *, host: str | None) -> None:
        self._configured_secret = settings.session_secret
        self._signer: TimestampSigner | None = None
        self._db = db
        self._secure = bool(settings.public_url and settings.public_url.startswith("https://"))
        self._host = host
        self.cookie_age = int(settings.web_chat_keep_days * DAY)
        self._per_address = settings.web_chat_per_address
        self._total = settings.web_chat_total
        self._new_per_address = settings.web_chat_new_per_address
        self._new_total = settings.web_chat_new_total
        self._inbox_per_address = INBOX_PER_ADDRESS
        self._refused: dict[str, tuple[Limit, float]] = {}
        """Keys found over their limit, and when their window ends: a count only grows within a
        window, so until then this process refuses them without asking the database."""

    async def signer(self) -> TimestampSigner:
        """Signs with SESSION_SECRET, or one made once and kept in the database."""
        if self._signer is None:
            configured = self._configured_secret
            secret = (
                configured.get_secret_value()
                if configured is not None
                else await kept_secret(self._db, "session")
            )
            self._signer = TimestampSigner(secret, salt=SALT, digest_method=hashlib.sha256)
        return self._signer

    def visitor(self, signer: TimestampSigner, cookie: str | None) -> str | None:
        """The visitor's id from a valid cookie younger than its maximum age, or None."""
        if cookie:
            try:
                return signer.unsign(cookie, max_age=self.cookie_age).decode()
            except (BadSignature, UnicodeDecodeError):
                pass
        return None

    def visitor_of(self, signer: TimestampSigner, request: Request) -> str | None:
        """The visitor the request's cookie names (the Secure one over HTTPS), or None."""
        secure = self._secure or request.url.scheme == "https"
        return self.visitor(signer, request.cookies.get(SECURE_COOKIE if secure else COOKIE))

    def limits(self, address: str, new_visitor: bool) -> tuple[list[Limit], list[Limit]]:
        """What a message counts against: the address's own limits, and the ones all addresses
        share (counted only when the address is within its own)."""
        own = [Limit(f"web:{address}", self._per_address, 60)]
        shared = [Limit("web", self._total, 60)]
        if new_visitor:
            own.append(Limit(f"web-new:{address}", self._new_per_address, 3600))
            shared.append(Limit("web-new", self._new_total, 3600))
        return own, shared

    def remembered(self, limits: list[Limit], now: float) -> tuple[Limit, float] | None:
        for limit in limits:
            found = self._refused.get(limit.key)
            if found is not None and found[1] > now:
                return found[0], found[1] - now
        return None

    async def over_limit(
        self, own: list[Limit], now: float, shared: list[Limit] | None = None
    ) -> Response | None:
        """The 429 to answer when a request counts past one of its limits (a key this process
        already knows to be over costs no statement); None when it is within them."""
        shared = shared or []
        over = self.remembered([*own, *shared], now) or await hit_now(self._db, own, now, shared)
        if over is None:
            return None
        self.remember(*over, now)
        return slow_down(*over)

    def remember(self, limit: Limit, wait: float, now: float) -> None:
        if len(self._refused) >= REMEMBERED:
            self._refused = {k: v for k, v in self._refused.items() if v[1] > now}
            if len(self._refused) >= REMEMBERED:
                self._refused.clear()  # the database still refuses them, one statement each
        self._refused[limit.key] = (limit, now + wait)

    async def receive(self, request: Request) -> Update:
        signer = await self.signer()
        try:
            incoming = await read_model(request, WebMessage, MAX_BODY)
        except ValidationError as exc:
            raise Rejected(422, first_error(exc)) from None
        secure = self._secure or request.url.scheme == "https"
        user_id = self.visitor_of(signer, request)
        address = client_address(request.scope, self._host)
        own, shared = self.limits(address, user_id is None)
        refused = await self.over_limit(own, time.time(), shared)
        if refused is not None:
            raise Answered(refused)
        user_id = user_id or secrets.token_urlsafe(16)
        client_id = incoming.id or secrets.token_hex(16)
        update_id = hashlib.sha256(f"{user_id}:{client_id}".encode()).hexdigest()[:40]
        account = Account(self.platform, user_id, user_id)
        if incoming.payload is not None:
            press = Press(answer=PRESS_ANSWER, message_id=incoming.message)
            message = Message(
                account, Kind.PRESS, payload=clean_text(incoming.payload), press=press
            )
            return Update(self.platform, update_id, message, secure)
        text = clean_text((incoming.text or "").strip())
        command = parse_command(text)
        if command is not None:
            message = Message(account, Kind.COMMAND, text, *command)
        else:
            message = Message(account, Kind.TEXT, text)
        return Update(self.platform, update_id, message, secure)

    async def collect(self, request: Request) -> Response:
        """`POST /webhooks/web/inbox` with `{}`: the messages waiting for the cookie's visitor,
        taken (each is shown once), as the chat's answer {"replies", "texts"}. Without a valid
        cookie: none, and nothing stored (no person is made). Counted against the address's own
        limit of collections; a key this process knows to be over costs no statement."""
        body = await read_json(request, MAX_INBOX_BODY)
        if body != {}:
            raise Rejected(422, "body: expected {} (the cookie says whose inbox)")
        user_id = self.visitor_of(await self.signer(), request)
        if user_id is None:
            return JSONResponse(answer([]), headers=NOT_STORED)
        address = client_address(request.scope, self._host)
        limit = Limit(f"web-inbox:{address}", self._inbox_per_address, 60)
        refused = await self.over_limit([limit], time.time())
        if refused is not None:
            return refused
        waiting = await collect_inbox(self._db, user_id)
        return JSONResponse(answer(waiting), headers=NOT_STORED)

    def rides_inline(self, delivery: Delivery) -> bool:
        return True  # the response is all the page gets

    def paces(self, delivery: Delivery) -> tuple[Pace, ...]:
        return ()  # no API: the page collects what waits for it

    def held_back(self, delivery: Delivery, error: ApiError) -> tuple[Pace, ...]:
        return ()

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        response = JSONResponse(answer(inline))
        if update.message is not None:
            assert self._signer is not None  # set by receive
            # Signed again with every answer: the maximum age counts from the last message.
            response.set_cookie(
                SECURE_COOKIE if update.over_https else COOKIE,
                self._signer.sign(update.message.account.user_id).decode(),
                max_age=self.cookie_age,
                path="/",
                httponly=True,
                samesite="lax",
                secure=update.over_https,
            )
        return response

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        raise AssertionError("web replies are always returned inline")


def answer(inline: list[Delivery]) -> dict[str, Any]:
    """The response's body: the bubbles, their plain texts (what a script that only wants the
    words reads, in order) and the notice of the press answered, if it has one."""
    bubbles = [bubble(d) for d in inline if d.answer is None]
    found: dict[str, Any] = {"replies": bubbles, "texts": [b["text"] for b in bubbles]}
    notice = next((d.text for d in inline if d.answer is not None and d.text), None)
    if notice is not None:
        found["notice"] = notice
    return found


def bubble(delivery: Delivery) -> dict[str, Any]:
    """One reply as the page shows it: `id` (the delivery's key: a press names it, an edit
    replaces it), `text` (plain), `html` (the text in the formatting subset, escaped: the page
    sets it as the bubble's HTML, so nothing a person wrote becomes markup), and when the reply
    has them `buttons` (rows of {"label", "payload"} or {"label", "url"}), `image` (an https
    URL) and `replaces` (the pressed bubble's id, for an edit)."""
    reply = delivery.content
    found: dict[str, Any] = {"id": delivery.key, "text": reply.text, "html": reply.html(web=True)}
    buttons = reply.to_json().get("buttons")
    if buttons:
        found["buttons"] = buttons
    if reply.image is not None:
        found["image"] = reply.image
    if delivery.edit_id is not None:
        found["replaces"] = delivery.edit_id
    return found


REASONS = {
    "web": "too many messages from your address",
    "web-new": "too many new visitors from your address",
    "web-inbox": "too many checks for messages from your address",
}
BUSY = {"web": "the web chat is busy", "web-new": "the web chat has had too many new visitors"}


def slow_down(limit: Limit, wait: float) -> Response:
    """429 with Retry-After and a reason the chat page shows."""
    seconds = max(1, math.ceil(wait))
    kind, _, address = limit.key.partition(":")
    what = REASONS[kind] if address else BUSY[kind]
    return JSONResponse(
        {"error": f"{what}: try again in {seconds} s", "retry_after": seconds},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )
