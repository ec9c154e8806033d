"""Features: what a flow includes in a line (linking, the passphrase gate, an author's own), each
bundling its states and commands, the effects it carries out, its tables, what happens to its rows
when two people become one, and what `portabot maintain` purges of them.

The pipeline, storage and maintenance know features only through this interface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from portabot.conversation.routing import Route, routes_of

if TYPE_CHECKING:
    import sqlalchemy as sa

    from portabot.conversation.engine import State
    from portabot.messages import Conversation, Message
    from portabot.settings import Settings
    from portabot.storage.database import Conn, Database
    from portabot.storage.people import Person

R = TypeVar("R")


class Effect(Generic[R]):
    """A request a flow makes of the pipeline (`ctx.request(...)`), carried out inside the update's
    transaction by the handler a feature registers for its type; the handler's result, an `R`,
    comes back to the flow (`State.resume`, or a route for the result's type). Subclass as a frozen
    dataclass: `class OpenTicket(Effect[TicketOpened])`."""


@dataclass(slots=True)
class EffectRun:
    """What an effect's handler is given: the update's transaction, the person (locked), their
    conversation as the step left it, the message (None for a resumed step), the time and the
    settings. A handler that makes two people one calls `merge_into` (the pipeline's)."""

    conn: Conn
    person: Person
    conversation: Conversation
    message: Message | None
    now: float
    settings: Settings
    merge_into: Callable[[Person], Awaitable[None]]
    """Make `person` absorb the current one: accounts and every feature's rows move to `kept`,
    conversations merge (Flow.merge), and the update continues as `kept`."""


EffectHandler = Callable[[EffectRun, Any], Awaitable[Any]]
HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[Any]])
_HANDLES = "__portabot_handles__"


def handles(*kinds: type[Effect[Any]]) -> Callable[[HandlerT], HandlerT]:
    """Mark a feature's method as the handler of these effect types:
    `@handles(OpenTicket) async def open(self, run: EffectRun, effect: OpenTicket) -> ...`."""
    if not kinds or not all(isinstance(k, type) and issubclass(k, Effect) for k in kinds):
        raise TypeError(f"@handles takes Effect subclasses, got {kinds!r}")

    def mark(method: HandlerT) -> HandlerT:
        setattr(method, _HANDLES, (*getattr(method, _HANDLES, ()), *kinds))
        return method

    return mark


class Feature:
    """Subclass and set what applies; every part is optional."""

    name: str = ""
    """Named in the start-up banner and by `portabot check`."""
    states: Sequence[State] = ()
    """States the feature adds to the flow (named `<feature>.<state>` by convention)."""
    entry: State | None = None
    """A state new people start in before the flow's own start (the passphrase gate)."""

    @property
    def tables(self) -> Sequence[sa.Table]:
        """Tables the feature keeps; `portabot migrate` creates those missing. A class attribute
        will do (`tables = (notes,)`); a property that imports SQLAlchemy when asked keeps the
        module importable where it is absent (the Lambda package serves without it)."""
        return ()

    @property
    def effects(self) -> Mapping[type[Effect[Any]], EffectHandler]:
        """The handler of each effect type the feature carries out: by default its methods
        decorated with @handles (a subclass may set a mapping instead)."""
        found: dict[type[Effect[Any]], EffectHandler] = {}
        seen: set[str] = set()
        for klass in type(self).__mro__:  # the most derived definition of a name wins
            for name, value in vars(klass).items():
                if name in seen:
                    continue
                seen.add(name)
                for kind in getattr(value, _HANDLES, ()):
                    if kind in found:
                        raise ValueError(
                            f"{type(self).__name__} has two handlers of {kind.__name__}"
                        )
                    found[kind] = getattr(self, name)
        return found

    @property
    def routes(self) -> Sequence[Route]:
        """Commands, patterns and results matched in every state (after the state's own routes
        and the flow's): by default the feature's methods decorated with @command and so on."""
        return routes_of(self)

    def configure(self, settings: Settings) -> None:
        """Called once with the deployment's settings when the bot starts (and by `check`)."""

    def problems(self, settings: Settings) -> list[str]:
        """What is wrong with the settings for this feature, one line each (`portabot check`)."""
        return []

    def merge_data(self, kept: dict[str, Any], absorbed: dict[str, Any]) -> dict[str, Any]:
        """Two people became one: the merged data, given Flow.merge's result (`kept`) and the
        absorbed person's data."""
        return kept

    async def merge(self, conn: Conn, kept: int, absorbed: int) -> None:
        """Two people became one: move or drop the absorbed person's rows in the feature's tables
        (before the absorbed person is deleted)."""

    async def purge(self, db: Database, now: float) -> str | None:
        """One idempotent clean-up for `portabot maintain`; returns the line it reports."""
        return None
