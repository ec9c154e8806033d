"""portabot: a chat-bot core. What a bot's author imports comes from here.

The light names are imported at once; Linking and Settings (which bring the storage and
pydantic) when first used, so that `import portabot` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portabot.conversation.engine import (
    START,
    Context,
    Flow,
    State,
    StateError,
    Step,
    Target,
)
from portabot.conversation.routing import FlowError, command, on, result, text
from portabot.features import Effect, EffectRun, Feature, handles
from portabot.features.passphrase import Passphrase
from portabot.messages import Account, Conversation, Kind, Message, Reply

if TYPE_CHECKING:
    from portabot.features.linking import Linking
    from portabot.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "START",
    "Account",
    "Context",
    "Conversation",
    "Effect",
    "EffectRun",
    "Feature",
    "Flow",
    "FlowError",
    "Kind",
    "Linking",
    "Message",
    "Passphrase",
    "Reply",
    "Settings",
    "State",
    "StateError",
    "Step",
    "Target",
    "__version__",
    "command",
    "handles",
    "on",
    "result",
    "text",
]

_LAZY = {
    "Linking": "portabot.features.linking",
    "Settings": "portabot.settings",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'portabot' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
