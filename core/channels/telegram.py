"""Telegram: the webhook (secret header, update parsing, inline reply) and the Bot API calls that
send a reply: sendMessage, sendPhoto, editMessageText/editMessageCaption, answerCallbackQuery."""

from __future__ import annotations

import hmac
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from portabot.channels.base import ApiError, Int64, Rejected, clean_text, first_error, read_model
from portabot.messages import (
    Account,
    Attachment,
    ChatMoved,
    Delivery,
    Kind,
    Message,
    Press,
    Update,
    parse_command,
)
from portabot.replies import Reply, dumps, length
from portabot.settings import Settings
from portabot.storage.pacing import Pace

if TYPE_CHECKING:
    from aiohttp import ClientSession

log = logging.getLogger("portabot.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
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


BOT_PER_SECOND = 25
"""Sends a second for the bot as a whole: Telegram allows about 30. Paced sends reach it jittered
by the network and by each sender's scheduling, so that a few may bunch into one second; 5 a
second of margin keeps even those under its limit."""
CHAT_INTERVAL, CHAT_BURST = 1.0, 3
"""A private chat: one message a second, and a few at once (a reply in several pieces) after a
quiet spell."""
GROUP_INTERVAL = 3.5
"""A group, supergroup or channel: Telegram allows 20 messages a minute; one every 3.5 s is 17,
and with no burst (a burst on top of the rate could make 21 in some minute)."""


def is_group(chat_id: str) -> bool:
    """Groups and supergroups have negative ids; a channel may be addressed by its @username."""
    return chat_id.startswith(("-", "@"))


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


CAPTION_LIMIT = 1024
"""Characters of a caption (TelegramChannel.max_caption); an edit of a photo's caption with a
longer text comes as a new message."""
MAX_CALLBACK_DATA = 64
"""Bytes of a button's callback_data (Telegram's limit; our payloads keep under it)."""
CAPTION_EDIT = ":caption"
"""Marks a pressed message's id (Press.message_id) when it is a photo or other media: its text is
a caption, edited by editMessageCaption."""
NOT_MODIFIED = "message is not modified"
EDIT_IMPOSSIBLE = (
    "message to edit not found",
    "message can't be edited",
    "there is no text in the message to edit",
    "there is no caption in the message to edit",
    "message_id_invalid",
)
"""Telegram's refusals of an edit that a new message can stand in for."""


def _callback_data(data: str) -> str:
    if len(data.encode()) > MAX_CALLBACK_DATA:
        raise ValueError(f"over Telegram's {MAX_CALLBACK_DATA} bytes of callback data")
    return data


FileId = Annotated[str, Field(min_length=1, max_length=512)]
Name = Annotated[str, Field(max_length=1024)]


class PhotoSize(_Model):
    file_id: FileId
    width: Int64 = 0
    height: Int64 = 0
    file_size: Int64 | None = None


class TelegramFile(_Model):
    """A video, document, audio, voice or sticker: what is kept of it."""

    file_id: FileId
    file_name: Name | None = None
    mime_type: Annotated[str, Field(max_length=255)] | None = None


class Location(_Model):
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]


FILES = (
    ("video", Kind.VIDEO),
    ("document", Kind.DOCUMENT),
    ("audio", Kind.AUDIO),
    ("voice", Kind.VOICE),
    ("sticker", Kind.STICKER),
)


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
    photo: Annotated[list[PhotoSize], Field(max_length=100)] | None = None
    video: TelegramFile | None = None
    document: TelegramFile | None = None
    audio: TelegramFile | None = None
    voice: TelegramFile | None = None
    sticker: TelegramFile | None = None
    location: Location | None = None

    def attachments(self) -> tuple[Attachment, ...]:
        """What was sent beside the text, the kind of message first (Telegram sends one, but a
        venue comes with its location and an animation with a document, for older clients)."""
        found = []
        if self.photo:
            # Sizes come smallest first; the largest is the one to keep.
            largest = max(self.photo, key=lambda size: (size.width * size.height, size.file_size))
            found.append(Attachment(Kind.PHOTO, largest.file_id))
        for name, kind in FILES:
            file: TelegramFile | None = getattr(self, name)
            if file is not None:
                found.append(Attachment(kind, file.file_id, None, file.file_name, file.mime_type))
        if self.location is not None:
            place = self.location
            found.append(
                Attachment(Kind.LOCATION, latitude=place.latitude, longitude=place.longitude)
            )
        return tuple(found)


class CallbackQuery(_Model):
    """A press of an inline keyboard's button."""

    id: Annotated[str, Field(min_length=1, max_length=256)]
    sender: User = Field(alias="from")
    message: TelegramMessage | None = None
    """The pressed message; only `chat`, `message_id` and `date` 0 when it is too old to see."""
    inline_message_id: Annotated[str, Field(max_length=256)] | None = None
    data: Annotated[str, AfterValidator(_callback_data)] | None = None


class TelegramUpdate(_Model):
    update_id: Int64
    message: TelegramMessage | None = None
    edited_message: TelegramMessage | None = None
    callback_query: CallbackQuery | None = None


class TelegramError(ApiError):
    """The Bot API refused a call: its HTTP status and description (Telegram's own words)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        retryable: bool = True,
        status: int = 0,
        description: str = "",
    ) -> None:
        super().__init__(message, retry_after=retry_after, retryable=retryable)
        self.status = status
        self.description = description


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
    max_caption: int | None = CAPTION_LIMIT

    def __init__(self, settings: Settings) -> None:
        assert settings.telegram_token is not None
        self._token = settings.telegram_token.get_secret_value()
        self._secret = (settings.telegram_webhook_secret() or "").encode()
        self._api = settings.telegram_api_url
        self.bot_username = settings.telegram_bot_username
        # The bot's id (the token's public part) names its schedules: a new bot has its own.
        self._pace = Pace(f"telegram:{self._token.partition(':')[0]}", 1 / BOT_PER_SECOND)

    async def receive(self, request: Request) -> Update:
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            raise Rejected(401, f"missing {SECRET_HEADER} header")
        if not hmac.compare_digest(given.encode(), self._secret):
            raise Rejected(403, f"wrong {SECRET_HEADER} header")
        try:
            return self._update(await read_model(request, TelegramUpdate))
        except ValidationError as exc:
            raise Rejected(400, f"not a Telegram update: {first_error(exc)}") from None

    def parse(self, payload: Any) -> Update:
        """One update, from getUpdates' result; raises Rejected."""
        try:
            return self._update(TelegramUpdate.model_validate(payload))
        except ValidationError as exc:
            raise Rejected(400, f"not a Telegram update: {first_error(exc)}") from None

    def _update(self, update: TelegramUpdate) -> Update:
        raw = update.message or update.edited_message
        if raw is not None:
            message = self._message(raw, edited=update.message is None)
        elif update.callback_query is not None:
            message = self._press(update.callback_query)
        else:
            message = None
        return Update(
            self.platform,
            str(update.update_id),
            message,
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
        # A message with text has no attachments (a photo's words are its caption).
        attachments = raw.attachments() if raw.text is None else ()
        if (
            raw.text is None
            and raw.caption is None
            and not attachments
            and CONTENT.isdisjoint(raw.model_extra or ())
        ):
            return None  # a service message: nothing the person said
        text = clean_text(raw.text or raw.caption or "")
        command = parse_command(text, self.bot_username)
        if command is not None:
            return Message(
                account, Kind.COMMAND, text, *command, at=at, edited=edited, attachments=attachments
            )
        if text.startswith("/") and raw.chat.type != "private":
            return None  # a command for another bot in a group
        kind = attachments[0].kind if attachments else Kind.TEXT
        return Message(account, kind, text, at=at, edited=edited, attachments=attachments)

    def _press(self, query: CallbackQuery) -> Message | None:
        """A button pressed: answered by the query's id; the pressed message edited by its id
        (marked when its text is a caption), unless it is too old to see (`date` 0) or was sent
        inline (no chat of ours: replies go to the person's private chat)."""
        sender = query.sender
        if sender.is_bot:
            return None
        pressed = query.message
        name = sender.username or sender.first_name
        if pressed is None:
            account = Account(self.platform, str(sender.id), str(sender.id), name)
            message_id = None
        else:
            thread = str(pressed.message_thread_id) if pressed.is_topic_message else None
            account = Account(self.platform, str(sender.id), str(pressed.chat.id), name, thread)
            message_id = None if pressed.date == 0 else str(pressed.message_id)
            if message_id is not None and pressed.text is None:
                message_id += CAPTION_EDIT
        # A game's button has no data: still a press to answer (with an empty payload).
        payload = clean_text(query.data or "")
        return Message(account, Kind.PRESS, payload=payload, press=Press(query.id, message_id))

    def rides_inline(self, delivery: Delivery) -> bool:
        # An image Telegram cannot fetch, or a message it can no longer edit, would be lost
        # without a word in a response; through the API it is retried or sent anew.
        if delivery.answer is not None:
            return True
        return delivery.edit_id is None and delivery.content.image is None

    def paces(self, delivery: Delivery) -> tuple[Pace, ...]:
        if delivery.answer is not None:  # a press's answer is no message in the chat
            return (self._pace,)
        return (self._pace, self._chat_pace(delivery.chat_id))

    def held_back(self, delivery: Delivery, error: ApiError) -> tuple[Pace, ...]:
        """Telegram's 429 does not say which limit it is: in a group, most likely the group's
        20 a minute (the chat waits, other chats go on); elsewhere the bot's own (all wait)."""
        if not isinstance(error, TelegramError) or error.status != 429:
            return ()
        if delivery.answer is None and is_group(delivery.chat_id):
            return (self._chat_pace(delivery.chat_id),)
        return (self._pace,)

    def _chat_pace(self, chat_id: str) -> Pace:
        scope = f"{self._pace.scope}:{chat_id}"
        if is_group(chat_id):
            return Pace(scope, GROUP_INTERVAL)
        return Pace(scope, CHAT_INTERVAL, CHAT_BURST)

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        if not inline:
            return Response(status_code=200)
        method, parameters = request_for(inline[0])
        # What JSONResponse would send, in a sixth of the time (replies.dumps).
        return Response(dumps({"method": method, **parameters}), media_type="application/json")

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        try:
            await self._send(session, delivery)
        except ChatUpgraded as upgraded:  # before its notice was processed (or if it was lost)
            # The supergroup is a new chat: the old group's messages cannot be edited there.
            moved = replace(delivery, chat_id=str(upgraded.new_chat_id), edit_id=None)
            await self._send(session, moved)

    async def _send(self, session: ClientSession, delivery: Delivery) -> None:
        method, parameters = request_for(delivery)
        try:
            await self.call(session, method, parameters)
        except TelegramError as exc:
            if not method.startswith("editMessage") or exc.status != 400:
                raise
            if NOT_MODIFIED in exc.description:
                return  # pressed again: it already says this
            if not any(why in exc.description.lower() for why in EDIT_IMPOSSIBLE):
                raise
            # Deleted, or too old to edit: the reply comes as a new message instead.
            log.info("telegram: %s; sending the reply as a new message", exc)
            method, parameters = request_for(replace(delivery, edit_id=None))
            await self.call(session, method, parameters)

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
            raise TelegramError(
                message,
                retry_after=parameters.get("retry_after"),
                retryable=status == 429 or status >= 500,
                status=status,
                description=str(answer.get("description", "")),
            )
        return answer.get("result")


def request_for(delivery: Delivery) -> tuple[str, dict[str, Any]]:
    """The Bot API method and parameters that carry out a delivery, through the API or in the
    webhook's response: answerCallbackQuery for a press's answer (its notice as the toast),
    editMessageText / editMessageCaption for an edit of the pressed message, sendPhoto for a
    reply with an image (the text its caption), else sendMessage. Formatted text goes as
    parse_mode HTML, buttons as an inline keyboard, and a new message into its forum topic."""
    if delivery.reply is None and delivery.answer is None and delivery.edit_id is None:
        plain: dict[str, Any] = {"chat_id": int(delivery.chat_id), "text": delivery.text}
        if delivery.thread_id is not None:  # the common case, kept short
            plain["message_thread_id"] = int(delivery.thread_id)
        return "sendMessage", plain
    if delivery.answer is not None:
        answer: dict[str, Any] = {"callback_query_id": delivery.answer}
        if delivery.text:
            answer["text"] = delivery.text
        return "answerCallbackQuery", answer
    reply = delivery.content
    chat = {"chat_id": int(delivery.chat_id)}
    text = _text(reply)
    extra = _markup(reply)
    edit = delivery.edit_id
    if edit is not None and reply.image is None:  # an image cannot replace a text: a new message
        message_id, _, caption = edit.partition(":")
        edited = {**chat, "message_id": int(message_id)}
        if not caption:
            return "editMessageText", {**edited, "text": text, **extra}
        if length(reply.text) <= CAPTION_LIMIT:
            return "editMessageCaption", {**edited, "caption": text, **extra}
    if delivery.thread_id is not None:
        chat["message_thread_id"] = int(delivery.thread_id)
    if reply.image is not None:
        photo: dict[str, Any] = {**chat, "photo": reply.image}
        if reply.text:
            photo["caption"] = text
        return "sendPhoto", {**photo, **extra}
    return "sendMessage", {**chat, "text": text, **extra}


def _text(reply: Reply) -> str:
    return reply.html() if reply.formatted else reply.text


def _markup(reply: Reply) -> dict[str, Any]:
    """parse_mode and reply_markup, where the reply needs them."""
    found: dict[str, Any] = {}
    if reply.formatted:
        found["parse_mode"] = "HTML"
    if reply.buttons:
        rows = [
            [
                {"text": b.label, "url": b.url}
                if b.url is not None
                else {"text": b.label, "callback_data": b.payload}
                for b in row
            ]
            for row in reply.buttons
        ]
        found["reply_markup"] = {"inline_keyboard": rows}
    return found


def _chat_moved(raw: TelegramMessage) -> ChatMoved | None:
    """A group upgraded to a supergroup: Telegram says so in both (either may come first)."""
    if raw.migrate_to_chat_id is not None:
        return ChatMoved(str(raw.chat.id), str(raw.migrate_to_chat_id))
    if raw.migrate_from_chat_id is not None:
        return ChatMoved(str(raw.migrate_from_chat_id), str(raw.chat.id))
    return None
