"""`POST /api/events`: an event from outside (an operator's answer, a shop's "order shipped")
delivered to a person's flow. On only when API_TOKEN is set (else 404).

The request: `Authorization: Bearer <API_TOKEN>` and a JSON body of at most MAX_BODY bytes,
`{"to": "telegram:123" | "vk:456" | "web:<id>" | 42, "name": "ticket-answered", "data": {...},
"id": "<the caller's id for it>"}`. `to` is a platform account or a person's id (then the
person's first account by platform and user id). The event is an update like any other (platform
"api", update id the caller's `id`) through the one pipeline: a repeated id is acknowledged and
not processed again. The flow sees a Kind.EVENT message (routes: `@event("name")`), and its
replies go to the person on every linked platform, as `ctx.tell`'s do.

Answers: 200 `{"ok": true, "duplicate": false}` after the commit (`duplicate: true` for an id seen
before); 401 for a missing or wrong token (nothing stored); 400/413/415/422 for a bad body and
404 for an unknown account or person, each with the reason; 503: retry.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from portabot.channels.base import Rejected, read_json
from portabot.conversation.routing import EVENT_NAME
from portabot.messages import Account, Delivery, Kind, Message, Update
from portabot.pipeline import is_database_error, run_update
from portabot.storage.database import Conn, Query
from portabot.storage.schema import SchemaBehind
from portabot.telling import PLATFORMS

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from portabot.bot import Bot
    from portabot.channels.base import ApiError
    from portabot.storage.pacing import Pace

log = logging.getLogger("portabot.events")

PLATFORM = "api"
"""The platform of an event's update (its update id is the caller's)."""
MAX_BODY = 64 * 1024
"""Bytes of an event's body (its data included)."""
EVENT_ID = re.compile(r"[\x21-\x7e]{1,64}")
"""The caller's id for an event: 1 to 64 visible ASCII characters (an update id's column)."""
MAX_USER_ID = 64
RETRY = {"error": "temporarily unavailable, retry"}

_ACCOUNT = Query(
    "SELECT platform, user_id, chat_id FROM accounts"
    " WHERE platform = :platform AND user_id = :user_id"
)
_FIRST_ACCOUNT = Query(
    "SELECT platform, user_id, chat_id FROM accounts WHERE person_id = :person_id"
    " ORDER BY platform, user_id LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Event:
    """A checked request: to whom (an account, or a person's id), its name, data and id."""

    platform: str | None
    user_id: str | None
    person_id: int | None
    name: str
    data: dict[str, Any]
    id: str

    @property
    def to(self) -> str:
        return f"person {self.person_id}" if self.person_id is not None else self.account

    @property
    def account(self) -> str:
        return f"{self.platform}:{self.user_id}"


class ApiChannel:
    """The channel of events: the caller retries what was not acknowledged (a 503), and nothing
    rides in the response (the replies go to the person, not to the caller)."""

    platform = PLATFORM
    inline_replies = 0
    redelivers = True
    in_order = True  # one event is no sender's turn in a chat: nothing to wait for
    max_text = None
    max_caption = None

    def rides_inline(self, delivery: Delivery) -> bool:
        return False

    async def receive(self, request: Request) -> Update:
        raise NotImplementedError("events are read by portabot.events.handle_event")

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        raise NotImplementedError("events are answered by portabot.events.handle_event")

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        raise NotImplementedError("nothing is sent to the api platform")

    def paces(self, delivery: Delivery) -> tuple[Pace, ...]:
        return ()

    def held_back(self, delivery: Delivery, error: ApiError) -> tuple[Pace, ...]:
        return ()


CHANNEL = ApiChannel()


def authorized(request: Request, token: str) -> str | None:
    """None when the request carries the token; else why not (never the token)."""
    header = request.headers.get("authorization")
    if header is None:
        return "missing Authorization: Bearer <API_TOKEN>"
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "Authorization is not Bearer <API_TOKEN>"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "wrong token"
    return None


def parse_event(body: Any) -> Event:
    """The event the body asks for; raises Rejected naming the field that is wrong."""
    if not isinstance(body, dict):
        raise Rejected(422, "body: a JSON object {to, name, data, id}")
    unknown = sorted(set(body) - {"to", "name", "data", "id"})
    if unknown:
        raise Rejected(422, f"{unknown[0][:40]!r}: not a field (to, name, data, id)")
    for field in ("to", "name", "id"):
        if field not in body:
            raise Rejected(422, f"{field}: required")
    name, data, event_id, to = body["name"], body.get("data", {}), body["id"], body["to"]
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise Rejected(
            422, "name: 1 to 64 lower-case letters, digits, '_', '.' or '-' (e.g. ticket-answered)"
        )
    if not isinstance(data, dict):
        raise Rejected(422, "data: a JSON object")
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise Rejected(422, "id: 1 to 64 visible ASCII characters (no spaces)")
    if type(to) is int:
        if not 1 <= to < 2**63:
            raise Rejected(422, "to: a person id is 1 or more")
        return Event(None, None, to, name, data, event_id)
    if not isinstance(to, str):
        raise Rejected(422, "to: a platform account (telegram:123) or a person id (42)")
    platform, colon, user_id = to.partition(":")
    if not colon or platform not in PLATFORMS:
        raise Rejected(422, f"to: PLATFORM:USER_ID with PLATFORM one of {', '.join(PLATFORMS)}")
    if not user_id or len(user_id) > MAX_USER_ID or not user_id.isprintable():
        raise Rejected(422, f"to: the user id is 1 to {MAX_USER_ID} printable characters")
    return Event(platform, user_id, None, name, data, event_id)


async def account_of(conn: Conn, event: Event) -> Account | None:
    """The account the event is addressed to (for a person, their first); None: unknown."""
    if event.person_id is not None:
        row = await conn.fetch_one(_FIRST_ACCOUNT, person_id=event.person_id)
    else:
        row = await conn.fetch_one(_ACCOUNT, platform=event.platform, user_id=event.user_id)
    if row is None:
        return None
    return Account(row["platform"], row["user_id"], row["chat_id"] or row["user_id"])


async def handle_event(bot: Bot, token: str, request: Request) -> Response:
    refused = authorized(request, token)
    if refused is not None:
        # One line a request (throttled under a flood); what was sent is never logged.
        bot.rejections.warning(("api", 401, refused), "events: 401 %s", refused)
        return JSONResponse(
            {"error": refused}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        event = parse_event(await read_json(request, MAX_BODY))
    except Rejected as rejected:
        bot.rejections.warning(
            ("api", rejected.status, rejected.reason),
            "events: %d %s",
            rejected.status,
            rejected.reason,
        )
        return JSONResponse({"error": rejected.reason}, status_code=rejected.status)
    except ClientDisconnect:
        return JSONResponse({"error": "the client disconnected"}, status_code=400)
    try:
        await bot.schema.ensure()
        async with bot.db.transaction() as conn:
            account = await account_of(conn, event)
    except SchemaBehind as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    except Exception as exc:
        log.error(
            "event %s not delivered: %s",
            event.id,
            type(exc).__name__,
            exc_info=not is_database_error(exc),
        )
        return JSONResponse(RETRY, status_code=503)
    if account is None:
        reason = (
            f"no person {event.person_id}"
            if event.person_id is not None
            else f"no account {event.account[:80]} (the person has not written to the bot)"
        )
        return JSONResponse({"error": reason}, status_code=404)
    message = Message(account, Kind.EVENT, at=bot.clock(), event=event.name, data=event.data)
    update = Update(PLATFORM, event.id, message, over_https=True)
    outcome = await run_update(bot, CHANNEL, update)
    if outcome is None:
        return JSONResponse(RETRY, status_code=503)
    if outcome.given_up:
        error = "the flow failed on this event; given up (see failed_updates)"
        return JSONResponse({"ok": False, "duplicate": False, "error": error}, status_code=200)
    return JSONResponse({"ok": True, "duplicate": outcome.duplicate})
