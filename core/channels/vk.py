"""VK: the Callback API webhook (confirmation, secret, both message shapes) and messages.send."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import re
import time
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from portabot.channels.base import (
    Answered,
    ApiError,
    Int64,
    Rejected,
    clean_text,
    first_error,
    parse_json,
    read_body,
)
from portabot.messages import Account, Delivery, Kind, Message, Update, parse_command
from portabot.settings import Settings

if TYPE_CHECKING:
    from aiohttp import ClientSession

log = logging.getLogger("portabot.vk")

EVENTS = ("message_new", "message_edit", "message_allow", "group_join", "group_leave")
API_TIMEOUT = 10.0
RETRYABLE_ERRORS = {1, 6, 9, 10}
"""VK error codes worth another try: unknown, too many requests, flood control, internal."""
MENTION = re.compile(r"^\[club\d+\|[^\]]*\][\s,:]*")
"""How VK prefixes a message that mentions the community in a group chat."""
MAX_BODY = 256 * 1024
"""Bytes of one Callback API event: a message's text is at most 4,096 characters (16 KB as
UTF-8 escapes at worst), and its attachments, reply and forwarded messages are metadata of a
few hundred bytes each; the largest real message_new seen, with a forward chain, was tens of KB."""
MAX_CONFIRMATION = 1024
"""Bytes of a `confirmation` request (the one event without our secret): a type and a group id."""
SECRET_FIELD = re.compile(rb'"secret"\s*:\s*"([^"\\]*)"')
"""A "secret" string in a raw body: ours is letters and digits, which JSON carries verbatim."""
CONFIRMATION_RETRY = 60.0
"""Seconds a failed lookup of the confirmation code is remembered: an anonymous `confirmation`
must not make a VK API call each time."""


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Event(_Model):
    """The envelope, checked before anything in `object` is looked at (a stranger's 256 KB
    costs a JSON parse, not a validation)."""

    type: str
    group_id: Int64
    event_id: Annotated[str, Field(max_length=64, pattern=r"^[!-~]*$")] | None = None
    secret: str | None = None


class VkAction(_Model):
    """What a service message in a chat reports: `chat_invite_user`, `chat_kick_user`, a pin, …"""

    type: str
    member_id: Int64 | None = None


class VkMessage(_Model):
    from_id: Int64
    peer_id: Int64
    text: str = ""
    date: Int64 = 0
    action: VkAction | None = None


class MemberEvent(_Model):
    user_id: Int64


class VkChannel:
    platform = "vk"
    inline_replies = 0  # VK must get the literal `ok`: every reply goes through messages.send
    redelivers = True
    in_order = False
    max_text: int | None = 4096
    max_caption: int | None = None

    def __init__(self, settings: Settings) -> None:
        assert settings.vk_token is not None and settings.vk_group_id is not None
        self._token = settings.vk_token.get_secret_value()
        self.group_id = settings.vk_group_id
        self._secret = (settings.vk_callback_secret() or "").encode()
        self._secret_given = settings.vk_secret is not None
        self._confirmation = settings.vk_confirmation
        self._confirmation_lookup = asyncio.Lock()
        self._confirmation_failed_at: float | None = None
        self._api = settings.vk_api_url
        self._version = settings.vk_api_version

    async def receive(self, request: Request) -> Update:
        raw = await read_body(request, MAX_BODY)
        if len(raw) > MAX_CONFIRMATION and not carries_secret(raw, self._secret):
            raise Rejected(403, "wrong secret")  # before the parse, most of what it would cost
        body = parse_json(raw)
        try:
            event = Event.model_validate(body)
        except ValidationError as exc:
            raise Rejected(400, f"not a VK event: {first_error(exc)}") from None
        if event.group_id != self.group_id:
            raise Rejected(403, "event for another group")
        if event.type == "confirmation":
            raise Answered(PlainTextResponse(await self.confirmation()))
        if event.secret is None:
            raise Rejected(403, "missing secret")
        if not hmac.compare_digest(event.secret.encode("utf-8", "surrogatepass"), self._secret):
            raise Rejected(403, "wrong secret")
        if not event.event_id:
            raise Rejected(400, "not a VK event: event_id: Field required")
        inner = body.get("object")
        if not isinstance(inner, dict):
            raise Rejected(400, "not a VK event: object: Input should be an object")
        try:
            message = self._message(event.type, inner)
        except ValidationError as exc:
            raise Rejected(400, f"not a VK {event.type}: {first_error(exc)}") from None
        return Update(self.platform, event.event_id, message)

    def _message(self, kind: str, body: dict[str, Any]) -> Message | None:
        if kind in ("message_new", "message_edit"):
            # API 5.103 and later wrap the message (next to client_info); older ones do not.
            inner = body.get("message")
            raw = VkMessage.model_validate(inner if isinstance(inner, dict) else body)
            if raw.from_id <= 0:
                return None  # a community, not a person
            account = Account(self.platform, str(raw.from_id), str(raw.peer_id))
            if raw.action is not None:
                return _chat_action(account, raw.from_id, raw.action, at=raw.date)
            text = MENTION.sub("", clean_text(raw.text))
            command = parse_command(text)
            edited = kind == "message_edit"
            if command is not None:
                return Message(account, Kind.COMMAND, text, *command, at=raw.date, edited=edited)
            return Message(account, Kind.TEXT, text, at=raw.date, edited=edited)
        if kind in ("message_allow", "group_join", "group_leave"):
            member = MemberEvent.model_validate(body)
            if member.user_id <= 0:
                return None
            account = Account(self.platform, str(member.user_id), str(member.user_id))
            return Message(account, Kind.LEFT if kind == "group_leave" else Kind.JOINED)
        return None  # an event we do not handle

    async def confirmation(self) -> str:
        """VK_CONFIRMATION, or the code VK gives us for the group: asked once at a time, then
        kept; a failure is kept for CONFIRMATION_RETRY seconds (503 meanwhile)."""
        async with self._confirmation_lookup:
            if self._confirmation is not None:
                return self._confirmation
            failed = self._confirmation_failed_at
            if failed is not None and time.monotonic() - failed < CONFIRMATION_RETRY:
                raise Rejected(503, "confirmation code unavailable: set VK_CONFIRMATION")
            from portabot.outbound import client_session

            try:
                async with client_session() as session:
                    answer = await self.call(session, "groups.getCallbackConfirmationCode", {})
                self._confirmation = str(answer["code"])
            except (ApiError, KeyError, TypeError) as exc:
                self._confirmation_failed_at = time.monotonic()
                log.warning("VK confirmation code not obtained (%s): set VK_CONFIRMATION", exc)
                raise Rejected(503, "confirmation code unavailable: set VK_CONFIRMATION") from None
            return self._confirmation

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        return PlainTextResponse("ok")

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        await self.call(
            session,
            "messages.send",
            {
                "peer_id": delivery.chat_id,
                "message": delivery.text,
                "random_id": random_id(delivery.key),
            },
        )

    async def set_webhook(
        self, session: ClientSession, url: str, *, drop_pending_updates: bool = False
    ) -> list[str]:
        """Register `url` as the group's Callback API server with our secret and events, where
        the token allows it; otherwise say what to enter in the group's settings."""
        try:
            servers = await self.call(session, "groups.getCallbackServers", {})
            found = [s for s in servers.get("items", []) if s.get("url") == url]
            server = {"url": url, "title": "portabot", "secret_key": self._secret.decode()}
            if found:
                server_id = found[0]["id"]
                await self.call(
                    session, "groups.editCallbackServer", {"server_id": server_id, **server}
                )
            else:
                added = await self.call(session, "groups.addCallbackServer", server)
                server_id = added["server_id"]
            await self.call(
                session,
                "groups.setCallbackSettings",
                {
                    "server_id": server_id,
                    "api_version": self._version,
                    **{event: 1 for event in EVENTS},
                },
            )
        except (ApiError, KeyError, TypeError, AttributeError) as exc:
            secret = "the value of VK_SECRET" if self._secret_given else self._secret.decode()
            return [
                f"VK: the token could not set the Callback API ({exc}); in the group's settings,",
                "  Manage → API usage → Callback API, enter:",
                f"  address: {url}",
                f"  secret key: {secret}",
                f"  API version: {self._version}",
                f"  events: {', '.join(EVENTS)}",
            ]
        return [
            f"VK Callback API server set: {url} (server {server_id})",
            f"  events: {', '.join(EVENTS)}; API version {self._version}; secret: set (not shown)",
        ]

    async def whoami(self, session: ClientSession) -> str:
        await self.call(session, "groups.getCallbackConfirmationCode", {})
        return f"VK accepts the token for group {self.group_id}"

    async def call(self, session: ClientSession, method: str, params: dict[str, Any]) -> Any:
        """One VK API call (form-encoded); VK's error objects come with HTTP 200 and are errors."""
        import aiohttp

        form = {
            "group_id": str(self.group_id),
            **{k: str(v) for k, v in params.items()},
            "access_token": self._token,
            "v": self._version,
        }
        try:
            async with session.post(
                f"{self._api}/{method}", data=form, timeout=aiohttp.ClientTimeout(total=API_TIMEOUT)
            ) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(f"VK {method}: {type(exc).__name__}") from None
        if not isinstance(answer, dict) or "error" in answer or "response" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else None
            error = error if isinstance(error, dict) else {}
            code = error.get("error_code")
            raise ApiError(
                f"VK {method}: HTTP {status} error {code} {str(error.get('error_msg', ''))[:120]}",
                retry_after=1.0 if code in (6, 9) else None,
                retryable=status >= 500 or code in RETRYABLE_ERRORS,
            )
        return answer["response"]


def _chat_action(account: Account, sender: int, action: VkAction, *, at: int) -> Message | None:
    """Joining a chat (invited, by link, …) and leaving it reach the flow; a member kicked by
    someone else, pins, title and photo changes and the rest are not something the sender said."""
    if action.type.startswith("chat_invite_user"):
        return Message(account, Kind.JOINED, at=at)
    if action.type == "chat_kick_user" and action.member_id == sender:
        return Message(account, Kind.LEFT, at=at)
    return None


def carries_secret(raw: bytes, secret: bytes) -> bool:
    """Whether a "secret" field of the unparsed body holds ours (the first few such fields,
    each compared in constant time); the parsed event's own secret is checked after this."""
    found = itertools.islice(SECRET_FIELD.finditer(raw), 8)
    return any(hmac.compare_digest(match.group(1), secret) for match in found)


def random_id(key: str) -> int:
    """messages.send's random_id (int32) for a reply: the same key always gives the same id, so
    VK drops a repeated send."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF
