"""Effects every flow has (a message to a person, a timer, a reply sent later, an outside call),
carried out by the pipeline itself rather than by a feature: each stores what it asks for in the
update's transaction and asks for no result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portabot.features import Effect

if TYPE_CHECKING:
    from portabot.bot import Bot
    from portabot.messages import Account
    from portabot.storage.database import Conn
    from portabot.storage.telling import Told


@dataclass(slots=True)
class Storing:
    """What a core effect is stored with: the update's transaction, the person whose step asked
    (locked), the account the step answers, a key that is the same at every attempt of the
    update, the time; and what the storing adds up to."""

    bot: Bot
    conn: Conn
    person_id: int
    account: Account
    key: str
    now: float
    told: Told
    calls: int = 0
    """Outside calls stored: the runner is asked to run them once the transaction commits."""
    notes: list[str] = field(default_factory=list)
    """What the pipeline logs about the storing (a platform with no channel here)."""


class CoreEffect(Effect[None]):
    """An effect the pipeline carries out: `store` writes what it asks for."""

    async def store(self, storing: Storing) -> None:
        raise NotImplementedError
