"""VK: the Callback API webhook (confirmation, secret, both message shapes, button presses,
attachments) and the replies through the API: messages.send, messages.edit for an edit of the
pressed message, messages.sendMessageEventAnswer for a press, the photo upload chain for images.

How our buttons travel: a payload button is a `callback` button (a `text` button for a client
without callback support) whose VK payload is the JSON object `{"p": "<our payload>"}`; only that
shape is read back. A message_event with any other payload (a client can send whatever it likes)
is still a press, with payload "" (so it is answered and no press route matches it); a
message_new with another payload (VK's own Start button sends `{"command": "start"}`) is the
message it carries, its payload ignored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

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
from portabot.messages import (
    Account,
    Attachment,
    Delivery,
    Kind,
    Message,
    Press,
    Update,
    parse_command,
)
from portabot.replies import MAX_NOTICE, MAX_PAYLOAD, Button, Reply, dumps, length
from portabot.settings import Settings
from portabot.storage.media import remember_media, remembered_media
from portabot.storage.pacing import Pace

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from portabot.storage.database import Database

log = logging.getLogger("portabot.vk")

EVENTS = (
    "message_new",
    "message_edit",
    "message_allow",
    "group_join",
    "group_leave",
    "message_event",
)
API_TIMEOUT = 10.0
CALLS_PER_SECOND = 16
"""API calls a second for the community: VK takes 20 with a community token (its error 6, "Too
many requests per second", past that); 4 of margin for sends that bunch on the way."""
TOO_MANY_REQUESTS = 6
RETRYABLE_ERRORS = {1, TOO_MANY_REQUESTS, 9, 10}
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
PAYLOAD_FIELD = "p"
"""Our payload's key in a VK button payload, `{"p": "size:s"}`."""
MAX_VK_PAYLOAD = 255
"""Characters of a VK button payload (JSON as a string)."""
EDIT_GONE = frozenset({15, 909})
"""messages.edit errors meaning the message cannot be edited (access denied, too old): the reply
is sent as a new message instead."""
ANSWER_RETRYABLE = frozenset({6, 9, 10})
"""sendMessageEventAnswer errors worth another try; any other (an event too old to answer, one
answered already) stays so: trying later cannot help."""
MAX_IMAGE = 10 * 1024 * 1024
"""Bytes of an image fetched for upload (VK's own limit for a message photo is 50 MB; a reply's
picture is far smaller, and this bounds what one URL can make us download)."""
IMAGE_TIMEOUT = 15.0
"""Seconds to fetch an image, and to upload it."""
PLATFORM_MEDIA = "vk"
"""The `media` table's platform for VK's uploaded photos."""


class VkApiError(ApiError):
    """An error object VK answered, with its error_code."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None,
        retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, retry_after=retry_after, retryable=retryable)
        self.code = code


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


class VkSize(_Model):
    url: str
    width: Int64 = 0
    height: Int64 = 0
    type: str = ""


class VkPhoto(_Model):
    id: Int64
    owner_id: Int64
    access_key: str | None = None
    sizes: list[VkSize] = []


class VkDoc(_Model):
    id: Int64
    owner_id: Int64
    access_key: str | None = None
    title: str = ""
    url: str | None = None


class VkAudioMessage(_Model):
    id: Int64
    owner_id: Int64
    access_key: str | None = None
    link_mp3: str | None = None
    link_ogg: str | None = None


class VkSticker(_Model):
    sticker_id: Int64
    product_id: Int64 = 0
    images: list[VkSize] = []


class VkVideo(_Model):
    id: Int64
    owner_id: Int64
    access_key: str | None = None
    title: str = ""


class VkAudio(_Model):
    id: Int64
    owner_id: Int64
    access_key: str | None = None
    artist: str = ""
    title: str = ""
    url: str | None = None


class VkAttachment(_Model):
    """One item of a message's `attachments`: its `type` names the field that holds it; types
    we do not read (a wall post, a poll, a link, a gift, …) are skipped unchecked."""

    type: str
    photo: VkPhoto | None = None
    doc: VkDoc | None = None
    audio_message: VkAudioMessage | None = None
    sticker: VkSticker | None = None
    video: VkVideo | None = None
    audio: VkAudio | None = None


class VkCoordinates(_Model):
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]


class VkGeo(_Model):
    coordinates: VkCoordinates


class VkMessage(_Model):
    from_id: Int64
    peer_id: Int64
    text: str = ""
    date: Int64 = 0
    action: VkAction | None = None
    payload: str | None = None
    """A text button's payload (a JSON string), from a client without callback buttons."""
    attachments: list[VkAttachment] = []
    geo: VkGeo | None = None


class VkPress(_Model):
    """message_event: a callback button pressed."""

    user_id: Int64
    peer_id: Int64
    event_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[!-~]*$")]
    payload: Any = None
    conversation_message_id: Int64 | None = None


class MemberEvent(_Model):
    user_id: Int64


class VkChannel:
    platform = "vk"
    inline_replies = 0  # VK must get the literal `ok`: every reply goes through messages.send
    redelivers = True
    in_order = False
    max_text: int | None = 4096
    max_caption: int | None = None

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        """`db` keeps what was uploaded (the `media` table); without it (a command that sends
        nothing) every image would be uploaded each time."""
        assert settings.vk_token is not None and settings.vk_group_id is not None
        self._db = db
        self._image_hosts = dict(settings.vk_image_hosts)
        self._uploading: dict[str, asyncio.Lock] = {}
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
            edited = kind == "message_edit"
            keyboard = client_keyboard(body.get("client_info")) if inner is not None else None
            # A text button of ours (an edit of such a message is not a second press).
            payload = our_payload(raw.payload) if raw.payload is not None and not edited else None
            if payload is not None:
                return Message(
                    account,
                    Kind.PRESS,
                    text,
                    at=raw.date,
                    edited=edited,
                    payload=payload,
                    press=Press(),
                    keyboard=keyboard,
                )
            attachments = _attachments(raw)
            if attachments:
                return Message(
                    account,
                    attachments[0].kind,
                    text,
                    at=raw.date,
                    edited=edited,
                    attachments=attachments,
                    keyboard=keyboard,
                )
            command = parse_command(text)
            if command is not None:
                return Message(
                    account,
                    Kind.COMMAND,
                    text,
                    *command,
                    at=raw.date,
                    edited=edited,
                    keyboard=keyboard,
                )
            return Message(account, Kind.TEXT, text, at=raw.date, edited=edited, keyboard=keyboard)
        if kind == "message_event":
            event = VkPress.model_validate(body)
            if event.user_id <= 0:
                return None
            account = Account(self.platform, str(event.user_id), str(event.peer_id))
            pressed = event.conversation_message_id
            press = Press(
                answer=f"{event.user_id}:{event.peer_id}:{event.event_id}",
                message_id=str(pressed) if pressed is not None and pressed > 0 else None,
            )
            payload = our_payload(event.payload)
            return Message(account, Kind.PRESS, payload=payload or "", press=press)
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

    def rides_inline(self, delivery: Delivery) -> bool:
        return False  # VK's response is the bare `ok`

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        return PlainTextResponse("ok")

    def paces(self, delivery: Delivery) -> tuple[Pace, ...]:
        """The community's schedule, taking a slot per API call the delivery may make: an edit
        may be followed by a send, an image by its upload's two calls (the first time only, but
        that is not known here), buttons for a client without them by a second message."""
        reply = delivery.content
        calls = 1 + (delivery.edit_id is not None) + 2 * (reply.image is not None)
        calls += delivery.keyboard == "none" and bool(reply.buttons)
        return (Pace(f"vk:{self.group_id}", calls / CALLS_PER_SECOND),)

    def held_back(self, delivery: Delivery, error: ApiError) -> tuple[Pace, ...]:
        if isinstance(error, VkApiError) and error.code == TOO_MANY_REQUESTS:
            return self.paces(delivery)
        return ()

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        if delivery.answer is not None:
            return await self._answer(session, delivery)
        reply = delivery.content
        text = reply.plain()
        keyboard = vk_keyboard(reply.buttons, delivery.keyboard)
        follow = ""
        if delivery.keyboard == "none" and reply.buttons:
            # A client that shows no buttons gets them as lines under the text (or after it).
            lines = buttons_as_text(reply.buttons)
            joined = f"{text}\n\n{lines}" if text else lines
            if self.max_text is None or length(joined) <= self.max_text:
                text = joined
            else:
                follow = lines
        params: dict[str, Any] = {"peer_id": delivery.chat_id, "message": text}
        if keyboard is not None:
            params["keyboard"] = keyboard
        if reply.image is not None:
            photo = await self._photo_or_none(session, delivery, reply)
            if photo is not None:
                params["attachment"] = photo
        edit_id = delivery.edit_id
        if edit_id is None or not await self._edit(session, edit_id, params):
            params["random_id"] = random_id(delivery.key)
            await self.call(session, "messages.send", params)
        if follow:
            await self.call(
                session,
                "messages.send",
                {
                    "peer_id": delivery.chat_id,
                    "message": follow,
                    "random_id": random_id(f"{delivery.key}/buttons"),
                },
            )

    async def _edit(self, session: ClientSession, edit_id: str, params: dict[str, Any]) -> bool:
        """Replace the pressed message; False when VK says it cannot be edited (too old, not
        ours), and the reply is then sent as a new message."""
        try:
            edit = {**params, "conversation_message_id": edit_id}
            await self.call(session, "messages.edit", edit)
        except VkApiError as exc:
            if exc.code in EDIT_GONE:
                log.info("VK message could not be edited (error %s): sent as a new one", exc.code)
                return False
            raise
        return True

    async def _answer(self, session: ClientSession, delivery: Delivery) -> None:
        """Answer a press (the spinner on the button stops), with a snackbar for a notice."""
        assert delivery.answer is not None
        user_id, _, rest = delivery.answer.partition(":")
        peer_id, _, event_id = rest.partition(":")
        if not (user_id and peer_id and event_id):
            raise ApiError("VK messages.sendMessageEventAnswer: not a VK press", retryable=False)
        params = {"event_id": event_id, "user_id": user_id, "peer_id": peer_id}
        if delivery.text:
            notice = {"type": "show_snackbar", "text": delivery.text[:MAX_NOTICE]}
            params["event_data"] = dumps(notice)
        try:
            await self.call(session, "messages.sendMessageEventAnswer", params)
        except VkApiError as exc:
            if exc.code not in ANSWER_RETRYABLE:
                exc.retryable = False
            raise

    async def _photo_or_none(
        self, session: ClientSession, delivery: Delivery, reply: Reply
    ) -> str | None:
        """The attachment for the reply's image; None when the image cannot be had for good (not
        found, not an image, too big): the text goes without it. A reply that is nothing but the
        image fails instead."""
        assert reply.image is not None
        try:
            return await self.photo(session, delivery.chat_id, reply.image)
        except ApiError as exc:
            if exc.retryable or not reply.text:
                raise
            log.warning("VK reply %s sent without its image: %s", delivery.key, exc)
            return None

    async def photo(self, session: ClientSession, peer_id: str, url: str) -> str:
        """The attachment (`photo<owner>_<id>[_<key>]`) for the image at `url`: uploaded the first
        time, from the `media` table ever after (one upload at a time per URL in a process)."""
        lock = self._uploading.setdefault(url, asyncio.Lock())
        try:
            async with lock:
                known = await self._remembered(url)
                if known is not None:
                    return known
                ref = await self._upload(session, peer_id, url)
                return await self._remember(url, ref)
        finally:
            if not lock.locked() and self._uploading.get(url) is lock:
                del self._uploading[url]

    async def _remembered(self, url: str) -> str | None:
        if self._db is None:
            return None
        try:
            return await remembered_media(self._db, PLATFORM_MEDIA, url)
        except Exception as exc:  # the reply matters more than saving an upload
            log.warning("VK uploaded images not read (%s): uploading again", type(exc).__name__)
            return None

    async def _remember(self, url: str, ref: str) -> str:
        if self._db is None:
            return ref
        try:
            return await remember_media(self._db, PLATFORM_MEDIA, url, ref)
        except Exception as exc:
            log.warning("VK uploaded image not remembered: %s", type(exc).__name__)
            return ref

    async def _upload(self, session: ClientSession, peer_id: str, url: str) -> str:
        """VK's chain: an upload server for the peer, the image POSTed to it as `photo`, then
        photos.saveMessagesPhoto with what the upload answered."""
        import aiohttp

        image, content_type = await self._fetch_image(session, url)
        server = await self.call(session, "photos.getMessagesUploadServer", {"peer_id": peer_id})
        upload_url = server.get("upload_url") if isinstance(server, dict) else None
        if not isinstance(upload_url, str) or not upload_url.startswith(("https://", "http://")):
            raise ApiError("VK photos.getMessagesUploadServer: no upload_url")
        subtype = content_type.partition("/")[2] or "jpeg"
        form = aiohttp.FormData()
        form.add_field(
            "photo",
            image,
            filename=f"image.{'jpg' if subtype == 'jpeg' else subtype}",
            content_type=content_type,
        )
        try:
            async with session.post(
                upload_url, data=form, timeout=aiohttp.ClientTimeout(total=IMAGE_TIMEOUT)
            ) as response:
                uploaded = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(f"VK photo upload: {type(exc).__name__}") from None
        if (
            not isinstance(uploaded, dict)
            or not isinstance(uploaded.get("photo"), str)
            or uploaded["photo"] in ("", "[]")
            or "server" not in uploaded
            or "hash" not in uploaded
        ):
            raise ApiError(
                f"VK photo upload: HTTP {status}, the photo was not taken", retryable=status >= 500
            )
        saved = await self.call(
            session,
            "photos.saveMessagesPhoto",
            {"photo": uploaded["photo"], "server": uploaded["server"], "hash": uploaded["hash"]},
        )
        try:
            photo = saved[0]
            owner_id, photo_id = int(photo["owner_id"]), int(photo["id"])
            access_key = photo.get("access_key")
        except (KeyError, IndexError, TypeError, ValueError):
            raise ApiError("VK photos.saveMessagesPhoto: no photo in the answer") from None
        ref = f"photo{owner_id}_{photo_id}"
        if isinstance(access_key, str) and access_key.isalnum():
            ref += f"_{access_key}"
        return ref

    async def _fetch_image(self, session: ClientSession, url: str) -> tuple[bytes, str]:
        """The image's bytes and content type: at most MAX_IMAGE bytes within IMAGE_TIMEOUT
        seconds, an image/* type, else an error that is permanent unless the host failed."""
        import aiohttp

        source = self._source(url)
        mapped = source != url
        if not mapped:
            await _refuse_inner_hosts(url)
        try:
            async with session.get(
                source,
                timeout=aiohttp.ClientTimeout(total=IMAGE_TIMEOUT),
                allow_redirects=mapped,  # a redirect could lead past the check of the host
            ) as response:
                status = response.status
                if status != 200:
                    raise ApiError(
                        f"VK image fetch: HTTP {status}", retryable=status >= 500 or status == 429
                    )
                content_type = response.content_type.lower()
                if not content_type.startswith("image/"):
                    raise ApiError(
                        f"VK image fetch: not an image ({content_type[:40]})", retryable=False
                    )
                declared = response.content_length
                if declared is not None and declared > MAX_IMAGE:
                    raise ApiError(f"VK image fetch: over {MAX_IMAGE} bytes", retryable=False)
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_IMAGE:
                        raise ApiError(f"VK image fetch: over {MAX_IMAGE} bytes", retryable=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(f"VK image fetch: {type(exc).__name__}") from None
        if not body:
            raise ApiError("VK image fetch: empty", retryable=False)
        return bytes(body), content_type

    def _source(self, url: str) -> str:
        """Where to fetch `url` from (VK_IMAGE_HOSTS maps a prefix elsewhere)."""
        for prefix, local in self._image_hosts.items():
            if url.startswith(prefix):
                return local + url[len(prefix) :]
        return url

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
            raise VkApiError(
                f"VK {method}: HTTP {status} error {code} {str(error.get('error_msg', ''))[:120]}",
                code=code if isinstance(code, int) else None,
                retry_after=1.0 if code in (6, 9) else None,
                retryable=status >= 500 or code in RETRYABLE_ERRORS,
            )
        return answer["response"]


async def _refuse_inner_hosts(url: str) -> None:
    """An image URL a flow took from a person must not make the bot fetch from its own network
    (loopback, private, link-local addresses: a cloud's metadata service): the host must resolve
    to public addresses only. (A name that resolves differently a moment later is not caught:
    the fetch is still bounded in size, time and type, and only an image is ever uploaded.)"""
    host = urlsplit(url).hostname or ""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, 443)
        addresses = {ipaddress.ip_address(info[4][0]) for info in found}
    except (OSError, ValueError):
        raise ApiError("VK image fetch: the host does not resolve", retryable=False) from None
    if not addresses or not all(address.is_global for address in addresses):
        raise ApiError("VK image fetch: the host is not a public address", retryable=False)


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


def our_payload(raw: object) -> str | None:
    """Our payload from a VK button payload (the JSON object `{"p": ...}`, or that object as a
    string, as message_new carries it); None for anything else."""
    if isinstance(raw, str):
        if len(raw) > MAX_VK_PAYLOAD:
            return None
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    if not isinstance(raw, dict):
        return None
    payload = raw.get(PAYLOAD_FIELD)
    if not isinstance(payload, str) or not payload:
        return None
    payload = clean_text(payload)
    return payload if len(payload.encode()) <= MAX_PAYLOAD else None


def client_keyboard(info: object) -> str | None:
    """Message.keyboard from message_new's client_info: "none" for a client that shows no
    (inline) keyboard, "text" for one without callback buttons, None for one with both (or no
    client_info: an older API version). A client_info of another shape says nothing."""
    if not isinstance(info, dict):
        return None
    if info.get("keyboard") is False or info.get("inline_keyboard") is False:
        return "none"
    actions = info.get("button_actions")
    if isinstance(actions, list) and "callback" not in actions:
        return "text"
    return None


def vk_keyboard(rows: tuple[tuple[Button, ...], ...], support: str | None) -> str | None:
    """messages.send's `keyboard`: inline, callback buttons (text buttons for "text"), links as
    open_link; None without buttons or for a client that shows none."""
    if not rows or support == "none":
        return None
    kind = "text" if support == "text" else "callback"

    def button(b: Button) -> dict[str, Any]:
        if b.url is not None:
            return {"action": {"type": "open_link", "link": b.url, "label": b.label}}
        payload = dumps({PAYLOAD_FIELD: b.payload})
        return {"action": {"type": kind, "label": b.label, "payload": payload}}

    return dumps({"inline": True, "buttons": [[button(b) for b in row] for row in rows]})


def buttons_as_text(rows: tuple[tuple[Button, ...], ...]) -> str:
    """The buttons for a client without keyboards: a link as `label: url` on a line of its own,
    the labels of a row's payload buttons on one line, ` | ` between them (what the person can
    type; it reaches the flow as text, not as a press)."""
    lines = []
    for row in rows:
        labels = [b.label for b in row if b.url is None]
        if labels:
            lines.append(" | ".join(labels))
        lines.extend(f"{b.label}: {b.url}" for b in row if b.url is not None)
    return "\n".join(lines)


def _attachments(raw: VkMessage) -> tuple[Attachment, ...]:
    found = [_cleaned(a) for a in map(_attachment, raw.attachments) if a is not None]
    if raw.geo is not None:
        point = raw.geo.coordinates
        found.append(Attachment(Kind.LOCATION, latitude=point.latitude, longitude=point.longitude))
    return tuple(found)


def _cleaned(found: Attachment) -> Attachment:
    """The attachment's strings as every database and API takes them (see clean_text)."""
    return replace(
        found,
        file_id=clean_text(found.file_id),
        url=clean_text(found.url) if found.url is not None else None,
        name=clean_text(found.name) if found.name is not None else None,
    )


SIZE_ORDER = "smxopqryzw"
"""VK's photo size letters, smallest first (old photos give no width and height)."""


def _largest(sizes: list[VkSize]) -> str | None:
    if not sizes:
        return None
    best = max(sizes, key=lambda s: (s.width * s.height, SIZE_ORDER.find(s.type)))
    return best.url or None


def _ref(kind: str, owner_id: int, item_id: int, access_key: str | None) -> str:
    """`<type><owner>_<id>[_<access_key>]`, as messages.send's `attachment` takes it."""
    ref = f"{kind}{owner_id}_{item_id}"
    return f"{ref}_{access_key}" if access_key else ref


def _attachment(item: VkAttachment) -> Attachment | None:
    if item.type == "photo" and item.photo is not None:
        p = item.photo
        return Attachment(
            Kind.PHOTO, _ref("photo", p.owner_id, p.id, p.access_key), url=_largest(p.sizes)
        )
    if item.type == "doc" and item.doc is not None:
        d = item.doc
        return Attachment(
            Kind.DOCUMENT,
            _ref("doc", d.owner_id, d.id, d.access_key),
            url=d.url or None,
            name=d.title or None,
        )
    if item.type == "audio_message" and item.audio_message is not None:
        v = item.audio_message
        return Attachment(
            Kind.VOICE,
            _ref("doc", v.owner_id, v.id, v.access_key),
            url=v.link_mp3 or v.link_ogg or None,
            mime_type="audio/mpeg" if v.link_mp3 else "audio/ogg" if v.link_ogg else None,
        )
    if item.type == "sticker" and item.sticker is not None:
        st = item.sticker
        return Attachment(Kind.STICKER, str(st.sticker_id), url=_largest(st.images))
    if item.type == "video" and item.video is not None:
        vi = item.video
        return Attachment(
            Kind.VIDEO, _ref("video", vi.owner_id, vi.id, vi.access_key), name=vi.title or None
        )
    if item.type == "audio" and item.audio is not None:
        a = item.audio
        name = " — ".join(part for part in (a.artist, a.title) if part) or None
        return Attachment(
            Kind.AUDIO, _ref("audio", a.owner_id, a.id, a.access_key), url=a.url or None, name=name
        )
    return None  # a type we do not read, or its object missing
