"""portabot: a chat-bot core. What a bot's author imports comes from here.

The light names are imported at once; Linking, Settings and the storage's Query, Conn and Database
(which bring the storage and pydantic) when first used, so that `import portabot` stays cheap.
A feature's effect handlers, merge and purge hooks are given a Conn or a Database and run Query
statements on them, so those three are the author's as much as Feature is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portabot.calls import CallFailed
from portabot.conversation.engine import (
    START,
    Context,
    Flow,
    State,
    StateError,
    Step,
    Target,
)
from portabot.conversation.routing import (
    FlowError,
    command,
    event,
    failed,
    on,
    press,
    result,
    returned,
    text,
    timer,
)
from portabot.features import Effect, EffectRun, Feature, handles
from portabot.features.passphrase import Passphrase
from portabot.messages import Account, Attachment, Conversation, Kind, Message, Press
from portabot.replies import Button, Reply, ReplyError, Span, bold, code, italic, link

if TYPE_CHECKING:
    from portabot.features.linking import Linking
    from portabot.settings import Settings
    from portabot.storage.database import Conn, Database, Query

__version__ = "0.1.0"

__all__ = [
    "START",
    "Account",
    "Attachment",
    "Button",
    "CallFailed",
    "Conn",
    "Context",
    "Conversation",
    "Database",
    "Effect",
    "EffectRun",
    "Feature",
    "Flow",
    "FlowError",
    "Kind",
    "Linking",
    "Message",
    "Passphrase",
    "Press",
    "Query",
    "Reply",
    "ReplyError",
    "Settings",
    "Span",
    "State",
    "StateError",
    "Step",
    "Target",
    "__version__",
    "bold",
    "code",
    "command",
    "event",
    "failed",
    "handles",
    "italic",
    "link",
    "on",
    "press",
    "result",
    "returned",
    "text",
    "timer",
]

_LAZY = {
    "Conn": "portabot.storage.database",
    "Database": "portabot.storage.database",
    "Linking": "portabot.features.linking",
    "Query": "portabot.storage.database",
    "Settings": "portabot.settings",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'portabot' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
