"""Outside calls: `ctx.call("weather", city="Oslo")` asks for a service the flow registered
(`Flow(services={"weather": fetch_weather})` or `@flow.service("weather")`) to be called with those
arguments. The call is a job stored in the step's transaction; it runs after the commit (never
while the person's row is locked, never twice for one update however often the platform delivers
it), and what it returns comes back to the flow as an update of its own kind: Kind.RETURNED
(`@returned("weather")`, `message.result`), or, once every attempt failed, Kind.FAILED
(`@failed("weather")`, `message.error`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portabot.effects import CoreEffect

if TYPE_CHECKING:
    from portabot.effects import Storing

Service = Callable[..., Awaitable[Any]]
"""An outside call: `async def weather(city: str) -> dict`, called with the keyword arguments
the flow gave `ctx.call`; what it returns must be JSON (a dict, a list, a str, a number)."""

TIMEOUT = 60.0
"""Seconds a service may take by default (a language model's long answer fits)."""
MAX_TIMEOUT = 600.0
"""The longest a service may be given: a runner holds the call that long and more."""
MAX_ARGS_BYTES = 16 * 1024
"""A call's arguments as JSON (a prompt for a language model fits; a file does not)."""
ATTEMPTS = 4
"""Tries before a call comes back as Kind.FAILED."""
MAX_RESULT_BYTES = 64 * 1024
"""What a service may return, as JSON: it is stored, then read in the person's next step."""


@dataclass(frozen=True, slots=True)
class Registration:
    """A service as the flow registered it."""

    function: Service
    timeout: float = TIMEOUT


def retry_after(attempt: int) -> float:
    """Seconds before the next try after the n-th failed one: 5, 20, 80."""
    return 5.0 * 4.0 ** (attempt - 1)


@dataclass(frozen=True, slots=True)
class Call(CoreEffect):
    """`ctx.call(...)`: call the flow's service `name` with `args` after the commit."""

    name: str
    args: dict[str, Any]

    async def store(self, storing: Storing) -> None:
        from portabot.storage.jobs import CALL, add_job

        await add_job(
            storing.conn,
            CALL,
            storing.person_id,
            storing.account,
            self.name,
            f"call:{storing.key}",
            self.args,
            storing.now,
            storing.now,
        )
        storing.calls += 1


class CallFailed(Exception):
    """Raised by a service for a failure that another try cannot mend (a refused request): the
    call comes back as Kind.FAILED at once, with this message as `message.error`."""


async def attempt(service: Service, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One try: `{"result": ...}`; raises what the service raised (TimeoutError after
    `timeout` seconds), CallFailed for a result that is not JSON or too big (another try would
    return the same)."""
    async with asyncio.timeout(timeout):
        result = await service(**args)
    try:
        encoded = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CallFailed(f"the service returned what JSON cannot hold: {exc}") from None
    if len(encoded.encode()) > MAX_RESULT_BYTES:
        raise CallFailed(f"the service returned over {MAX_RESULT_BYTES} bytes of JSON")
    return {"result": json.loads(encoded)}


def describe_failure(exc: BaseException, timeout: float) -> str:
    """Why an attempt failed, in one line for the flow and the log (never a traceback)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
