"""portabot's log: where its lines go (`configure_logging`), and lines a stranger can cause at
most once per kind every few seconds, with a count of the ones left out, so that a flood of bad
requests cannot fill the logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

EVERY = 5.0
"""Seconds between two lines of one kind; the next line says how many were left out."""
MAX_KINDS = 256
"""Kinds remembered at once (a reason may quote the sender): beyond, new kinds share one more."""


OTHERS = "(other kinds)"


def configure_logging(level: str) -> None:
    logger = logging.getLogger("portabot")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


class ThrottledLog:
    def __init__(
        self,
        logger: logging.Logger,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every = every
        self._clock = clock
        self._kinds: dict[Hashable, tuple[float, int]] = {}
        """kind → (when its last line was written, how many have been left out since)."""

    def log(self, level: int, kind: Hashable, message: str, *args: object) -> None:
        now = self._clock()
        if kind not in self._kinds and len(self._kinds) >= MAX_KINDS:
            self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.every}
            if len(self._kinds) >= MAX_KINDS:
                kind = OTHERS
        since, left_out = self._kinds.get(kind, (-self.every, 0))
        if now - since < self.every:
            self._kinds[kind] = (since, left_out + 1)
            return
        self._kinds[kind] = (now, 0)
        if left_out:
            message += f" (and {left_out} more in the last {now - since:.0f} s)"
        self.logger.log(level, message, *args)

    def warning(self, kind: Hashable, message: str, *args: object) -> None:
        self.log(logging.WARNING, kind, message, *args)
