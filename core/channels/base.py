"""What every channel provides, and the checks every webhook body goes through."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from portabot.messages import Delivery, Update

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiohttp import ClientSession

    from portabot.storage.pacing import Pace

MAX_BODY = 1024 * 1024
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""A platform's integer id or time: what the database's BIGINT and our id columns take."""


class Rejected(Exception):
    """A delivery we refuse: answered with `status` and `reason`, nothing processed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Answered(Exception):
    """A delivery the channel answers itself, with nothing to process (VK's confirmation)."""

    def __init__(self, response: Response) -> None:
        super().__init__("answered")
        self.response = response


class ApiError(Exception):
    """A platform API call failed; the message names the method and cause, never the URL."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable
        """False when trying again cannot help (a blocked bot, a chat that does not exist)."""


class Channel(Protocol):
    @property
    def platform(self) -> str: ...

    @property
    def inline_replies(self) -> int | None:
        """How many replies the webhook response can carry (None: all of them)."""

    @property
    def redelivers(self) -> bool:
        """Whether the platform delivers an update again when it got no acknowledgement (the
        pipeline then gives the flow a few tries at it; otherwise one)."""

    @property
    def in_order(self) -> bool:
        """Whether updates arrive one at a time in order (polling), so that none waits for a
        sender's earlier ones (ORDER_WINDOW_MS)."""

    @property
    def max_text(self) -> int | None:
        """The longest message the platform takes, in characters (None: no limit); a longer
        reply is cut into several."""

    @property
    def max_caption(self) -> int | None:
        """The longest caption of an image (None: as max_text)."""

    def rides_inline(self, delivery: Delivery) -> bool:
        """Whether the webhook response may carry this delivery: the platform reports no error
        for what a response carries, so what can fail there (Telegram fetching an image) goes
        through the API, where a failure is seen and retried."""

    async def receive(self, request: Request) -> Update:
        """Verify and parse one delivery; raises Rejected."""

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        """The acknowledgement, carrying the inline replies."""

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        """Send one reply through the platform's API; raises ApiError."""

    def paces(self, delivery: Delivery) -> Sequence[Pace]:
        """The schedules an API send of the delivery takes a slot in, which keep the platform's
        rate limits across every sender (empty: none apply)."""

    def held_back(self, delivery: Delivery, error: ApiError) -> Sequence[Pace]:
        """Of the delivery's paces, those the refusal says are over their limit, for every
        sender to hold until its retry_after (empty: the refusal is not about rates)."""


class Unanswered:
    """The channel of updates no platform waits on (an event from outside, a timer, a call's
    result): nothing rides in a response (replies go through the account's platform: its API,
    or a web visitor's inbox), cut to `like`'s lengths; a step that failed is tried again (the
    caller retries, or a later run)."""

    inline_replies = 0
    redelivers = True
    in_order = True  # no sender's turn to wait for

    def __init__(self, platform: str, like: Channel | None = None) -> None:
        self.platform = platform
        self.max_text = like.max_text if like is not None else None
        self.max_caption = like.max_caption if like is not None else None

    def rides_inline(self, delivery: Delivery) -> bool:
        return False

    async def receive(self, request: Request) -> Update:
        raise NotImplementedError(f"{self.platform} updates are not received over HTTP here")

    def respond(self, update: Update, inline: list[Delivery]) -> Response:
        raise NotImplementedError(f"{self.platform} updates are not answered over HTTP")

    async def send(self, session: ClientSession, delivery: Delivery) -> None:
        raise AssertionError(f"replies go through their account's channel, not {self.platform}")

    def paces(self, delivery: Delivery) -> Sequence[Pace]:
        return ()

    def held_back(self, delivery: Delivery, error: ApiError) -> Sequence[Pace]:
        return ()


async def read_json(request: Request, limit: int = MAX_BODY) -> Any:
    """The JSON body, refusing a wrong content type or a body over `limit` before reading it all."""
    return parse_json(await read_body(request, limit))


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M], limit: int = MAX_BODY) -> M:
    """The JSON body as `model`, parsed and validated in one pass (half the time of json.loads
    and then model_validate); refused as `read_json` does. Raises ValidationError for JSON
    that is not the model."""
    body = await read_body(request, limit)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if exc.errors()[0]["type"] != "json_invalid":
            raise
    # Not JSON to pydantic: refused in json's words, or taken as before (NaN, say, which only
    # Python's json reads).
    return model.model_validate(parse_json(body))


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body of a JSON delivery, unparsed; refused as `read_json` does."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/json":
        raise Rejected(415, "expected Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"body over {limit} bytes")
    # The ASGI messages themselves (Request.stream's async generator costs more than the loop).
    body = bytearray()
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > limit:
            raise Rejected(413, f"body over {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    except RecursionError:
        raise Rejected(400, "body is nested too deeply") from None
    except ValueError:
        raise Rejected(400, "body is not valid JSON") from None


def first_error(exc: ValidationError) -> str:
    """The first validation problem as `where: what`."""
    err = exc.errors()[0]
    # The location may hold a key the sender chose: short, and on one line, for the log.
    where = ".".join(str(p) for p in err["loc"])[:100].encode("unicode_escape").decode()
    return f"{where or 'body'}: {err['msg']}"


def clean_text(text: str) -> str:
    """Text that every database and API accepts: lone surrogates and NULs replaced."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
