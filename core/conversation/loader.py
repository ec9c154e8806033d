"""BOT_FLOW=package.module:attribute: the flow a deployment brings, loaded by name."""

from __future__ import annotations

import importlib
import os
import sys

from portabot.conversation.engine import Flow
from portabot.settings import ConfigurationError, Settings


def load_flow(settings: Settings) -> Flow:
    """The attribute is a Flow, or a callable taking the settings and returning one; either way
    configured with the settings (Flow.configure: STATE_MAX_BYTES, the features' settings)."""
    module_name, _, attribute = settings.bot_flow.partition(":")
    # Like uvicorn and gunicorn, look in the working directory too (console scripts do not).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"BOT_FLOW: cannot import {module_name}: {exc}") from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"BOT_FLOW: {module_name} has no {attribute}") from None
    flow = found if isinstance(found, Flow) else found(settings) if callable(found) else None
    if not isinstance(flow, Flow):
        raise ConfigurationError(
            f"BOT_FLOW: {settings.bot_flow} is neither a Flow nor a function returning one"
        )
    flow.configure(settings)
    return flow


def flow_summary(settings: Settings, flow: Flow) -> str:
    """The flow as the start-up banner and `portabot check` name it: BOT_FLOW and its features."""
    names = ", ".join(feature.name or type(feature).__name__ for feature in flow.features)
    return f"flow {settings.bot_flow}" + (f" with {names}" if names else "")
