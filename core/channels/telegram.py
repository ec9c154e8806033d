"""Telegram: the webhook (secret header, update parsing, inline reply) and sendMessage."""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.channels.base import ApiError, Int64, Rejected, clean_text, first_error, read_json
from core.messages import Account, Delivery, Kind, Message, Update, parse_command
from core.settings import Settings

if TYPE_CHECKING:
    from aiohttp import ClientSession

log = logging.getLogger("portabot.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"
ALLOWED_UPDATES = ("message", "edited_message")
API_TIMEOUT = 10.0


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
    message_id: Int64
    date: Int64 = 0
    chat: Chat
    sender: User | None = Field(default=None, alias="from")
    text: str | None = None
    caption: str | None = None
    new_chat_members: list[User] | None = None
    left_chat_member: User | None = None


class TelegramUpdate(_Model):
    update_id: Int64
    message: TelegramMessage | None = None
    edited_message: TelegramMessage | None = None


class TelegramChannel:
    platform = "telegram"
    inline_replies = 1

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
        message = self._message(update)
        return Update(self.platform, str(update.update_id), message, sequence=update.update_id)

    def _message(self, update: TelegramUpdate) -> Message | None:
        edited = update.message is None
        raw = update.message or update.edited_message
        if raw is None or raw.sender is None or raw.sender.is_bot:
            return None  # another update type, a channel post, or a bot: nothing to answer
        sender = raw.sender
        account = Account(
            self.platform, str(sender.id), str(raw.chat.id), sender.username or sender.first_name
        )
        at = float(raw.date)
        if raw.new_chat_members:
            return Message(account, Kind.JOINED, at=at)
        if raw.left_chat_member is not None:
            return Message(account, Kind.LEFT, at=at)
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
        reply = inline[0]
        return JSONResponse(
            {"method": "sendMessage", "chat_id": int(reply.chat_id), "text": reply.text}
        )

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        await self.call(
            session, "sendMessage", {"chat_id": int(delivery.chat_id), "text": delivery.text}
        )

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
            raise ApiError(
                f"Telegram {method}: HTTP {status} {str(answer.get('description', ''))[:120]}",
                retry_after=parameters.get("retry_after"),
                retryable=status == 429 or status >= 500,
            )
        return answer.get("result")
