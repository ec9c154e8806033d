"""The web chat: `POST /webhooks/web` with {"text": ...}; a signed HttpOnly cookie names
the person."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, Signer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.channels.base import Rejected, clean_text, first_error, read_json
from core.messages import Account, Delivery, Kind, Message, Update, parse_command

if TYPE_CHECKING:
    from aiohttp import ClientSession

COOKIE = "portabot_web"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie
MAX_TEXT = 4096
MAX_BODY = 64 * 1024


class WebMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    text: str = Field(max_length=MAX_TEXT)
    id: str | None = Field(default=None, min_length=1, max_length=64)
    """Optional client-made id: a retried POST with the same id is processed once."""


def visitor(signer: Signer, cookie: str | None) -> str:
    """The visitor's id from a valid cookie, or a new one."""
    if cookie:
        try:
            return signer.unsign(cookie).decode()
        except (BadSignature, UnicodeDecodeError):
            pass
    return secrets.token_urlsafe(16)


class WebChannel:
    platform = "web"
    inline_replies = None

    def __init__(self, session_secret: Callable[[], Awaitable[str]], *, secure: bool) -> None:
        self._session_secret = session_secret
        self._signer: Signer | None = None
        self._secure = secure

    async def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer(await self._session_secret(), salt="portabot web chat")
        return self._signer

    async def receive(self, request: Request) -> Update:
        signer = await self.signer()
        body = await read_json(request, MAX_BODY)
        try:
            incoming = WebMessage.model_validate(body)
        except ValidationError as exc:
            raise Rejected(422, first_error(exc)) from None
        user_id = visitor(signer, request.cookies.get(COOKIE))
        client_id = incoming.id or secrets.token_hex(16)
        update_id = hashlib.sha256(f"{user_id}:{client_id}".encode()).hexdigest()[:40]
        text = clean_text(incoming.text.strip())
        account = Account(self.platform, user_id, user_id)
        command = parse_command(text)
        if command is not None:
            message = Message(account, Kind.COMMAND, text, *command)
        else:
            message = Message(account, Kind.TEXT, text)
        return Update(self.platform, update_id, message, request.url.scheme == "https")

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        response = JSONResponse({"replies": [d.text for d in inline]})
        if update.message is not None:
            assert self._signer is not None  # set by receive
            response.set_cookie(
                COOKIE,
                self._signer.sign(update.message.account.user_id).decode(),
                max_age=COOKIE_MAX_AGE,
                httponly=True,
                samesite="lax",
                secure=self._secure or update.over_https,
            )
        return response

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        raise AssertionError("web replies are always returned inline")
