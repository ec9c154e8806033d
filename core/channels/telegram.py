"""Telegram: the webhook (secret header, update parsing, inline reply) and sendMessage."""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portabot.channels.base import ApiError, Int64, Rejected, clean_text, first_error, read_json
from portabot.messages import Account, ChatMoved, Delivery, Kind, Message, Update, parse_command
from portabot.settings import Settings

if TYPE_CHECKING:
    from aiohttp import ClientSession

log = logging.getLogger("portabot.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"
ALLOWED_UPDATES = ("message", "edited_message")
API_TIMEOUT = 10.0
TELEGRAM_SERVICE_ACCOUNT = 777000
"""The sender Telegram gives its own notices and channel posts forwarded to a discussion group."""
CONTENT = frozenset(
    {
        "animation", "audio", "checklist", "contact", "dice", "document", "game", "location",
        "paid_media", "photo", "poll", "sticker", "story", "venue", "video", "video_note", "voice",
    }
)  # fmt: skip
"""What a person can send without text; a message with none of it (and no text) is a service
message: a pin, a forum topic, a title or photo change, a payment, … (the Bot API adds more)."""


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class User(_Model):
    id: Int64
    is_bot: bool = False
    first_name: str = ""
    username: str | None = None


class Chat(_Model):
    id: Int64
    type: str = "private"


class TelegramMessage(_Model):
    # Extra fields are kept (not validated) to tell what a message without text holds.
    model_config = ConfigDict(extra="allow")

    message_id: Int64
    date: Int64 = 0
    chat: Chat
    sender: User | None = Field(default=None, alias="from")
    sender_chat: Chat | None = None
    message_thread_id: Int64 | None = None
    is_topic_message: bool = False
    is_automatic_forward: bool = False
    text: str | None = None
    caption: str | None = None
    new_chat_members: list[User] | None = None
    left_chat_member: User | None = None
    migrate_to_chat_id: Int64 | None = None
    migrate_from_chat_id: Int64 | None = None


class TelegramUpdate(_Model):
    update_id: Int64
    message: TelegramMessage | None = None
    edited_message: TelegramMessage | None = None


class ChatUpgraded(ApiError):
    """The chat is a group that became a supergroup: Telegram names the new chat."""

    def __init__(self, message: str, new_chat_id: int) -> None:
        super().__init__(message, retryable=False)
        self.new_chat_id = new_chat_id


class TelegramChannel:
    platform = "telegram"
    inline_replies = 1
    redelivers = True
    in_order = False
    max_text: int | None = 4096
    max_caption: int | None = 1024

    def __init__(self, settings: Settings) -> None:
        assert settings.telegram_token is not None
        self._token = settings.telegram_token.get_secret_value()
        self._secret = (settings.telegram_webhook_secret() or "").encode()
        self._api = settings.telegram_api_url
        self.bot_username = settings.telegram_bot_username

    async def receive(self, request: Request) -> Update:
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            raise Rejected(401, f"missing {SECRET_HEADER} header")
        if not hmac.compare_digest(given.encode(), self._secret):
            raise Rejected(403, f"wrong {SECRET_HEADER} header")
        return self.parse(await read_json(request))

    def parse(self, payload: Any) -> Update:
        """One update, from a webhook's body or getUpdates' result; raises Rejected."""
        try:
            update = TelegramUpdate.model_validate(payload)
        except ValidationError as exc:
            raise Rejected(400, f"not a Telegram update: {first_error(exc)}") from None
        raw = update.message or update.edited_message
        return Update(
            self.platform,
            str(update.update_id),
            None if raw is None else self._message(raw, edited=update.message is None),
            sequence=update.update_id,
            chat_moved=None if raw is None else _chat_moved(raw),
        )

    def _message(self, raw: TelegramMessage, *, edited: bool) -> Message | None:
        sender = raw.sender
        if sender is None or sender.is_bot or sender.id == TELEGRAM_SERVICE_ACCOUNT:
            return None  # a channel post, a bot (or an anonymous admin), Telegram itself
        if raw.sender_chat is not None or raw.is_automatic_forward:
            # Sent on behalf of a chat: every anonymous admin shares one `from`, so there is no
            # person to answer, or to give state to.
            return None
        # Only a forum topic takes message_thread_id back; elsewhere it names a reply chain.
        thread = str(raw.message_thread_id) if raw.is_topic_message else None
        name = sender.username or sender.first_name
        account = Account(self.platform, str(sender.id), str(raw.chat.id), name, thread)
        at = float(raw.date)
        if raw.new_chat_members:
            return Message(account, Kind.JOINED, at=at)
        if raw.left_chat_member is not None:
            if raw.left_chat_member.id != sender.id:
                return None  # someone removed by an admin: the admin did not leave
            return Message(account, Kind.LEFT, at=at)
        if raw.text is None and raw.caption is None and CONTENT.isdisjoint(raw.model_extra or ()):
            return None  # a service message: nothing the person said
        text = clean_text(raw.text or raw.caption or "")
        command = parse_command(text, self.bot_username)
        if command is not None:
            return Message(account, Kind.COMMAND, text, *command, at=at, edited=edited)
        if text.startswith("/") and raw.chat.type != "private":
            return None  # a command for another bot in a group
        return Message(account, Kind.TEXT, text, at=at, edited=edited)

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        if not inline:
            return Response(status_code=200)
        return JSONResponse({"method": "sendMessage", **send_message(inline[0])})

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        try:
            await self.call(session, "sendMessage", send_message(delivery))
        except ChatUpgraded as upgraded:  # before its notice was processed (or if it was lost)
            moved = Delivery(self.platform, str(upgraded.new_chat_id), delivery.text, delivery.key)
            await self.call(session, "sendMessage", send_message(moved))

    async def set_webhook(
        self, session: ClientSession, url: str, *, drop_pending_updates: bool = False
    ) -> list[str]:
        """Point Telegram at `url` with our secret; returns what to tell the user."""
        await self.call(
            session,
            "setWebhook",
            {
                "url": url,
                "secret_token": self._secret.decode(),
                "allowed_updates": list(ALLOWED_UPDATES),
                "drop_pending_updates": drop_pending_updates,
            },
        )
        return [
            f"Telegram webhook set: {url}",
            f"  updates: {', '.join(ALLOWED_UPDATES)}; secret token: set (not shown)",
        ]

    async def whoami(self, session: ClientSession) -> str:
        me = await self.call(session, "getMe", {})
        return f"Telegram accepts the token (bot @{me.get('username')})"

    async def call(
        self,
        session: ClientSession,
        method: str,
        payload: dict[str, Any],
        *,
        timeout: float = API_TIMEOUT,
    ) -> Any:
        """One Bot API call; errors never carry the URL (it holds the token)."""
        import aiohttp

        url = f"{self._api}/bot{self._token}/{method}"
        try:
            async with session.post(
                url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(f"Telegram {method}: {type(exc).__name__}") from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            answer = answer if isinstance(answer, dict) else {}
            parameters = answer.get("parameters") or {}
            message = f"Telegram {method}: HTTP {status} {str(answer.get('description', ''))[:120]}"
            moved_to = parameters.get("migrate_to_chat_id")
            if type(moved_to) is int:
                raise ChatUpgraded(message, moved_to)
            raise ApiError(
                message,
                retry_after=parameters.get("retry_after"),
                retryable=status == 429 or status >= 500,
            )
        return answer.get("result")


def send_message(delivery: Delivery) -> dict[str, Any]:
    """sendMessage's parameters for a reply (in its forum topic, if it has one)."""
    parameters: dict[str, Any] = {"chat_id": int(delivery.chat_id), "text": delivery.text}
    if delivery.thread_id is not None:
        parameters["message_thread_id"] = int(delivery.thread_id)
    return parameters


def _chat_moved(raw: TelegramMessage) -> ChatMoved | None:
    """A group upgraded to a supergroup: Telegram says so in both (either may come first)."""
    if raw.migrate_to_chat_id is not None:
        return ChatMoved(str(raw.chat.id), str(raw.migrate_to_chat_id))
    if raw.migrate_from_chat_id is not None:
        return ChatMoved(str(raw.migrate_from_chat_id), str(raw.chat.id))
    return None
