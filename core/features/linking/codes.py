"""One-time link codes: a few words from a list shipped with the package (no network needed)."""

from __future__ import annotations

import re
import secrets
from functools import cache
from importlib.resources import files

CODE_WORDS = 4
CODE_LIFETIME = 600.0
"""Seconds a link code stays valid."""


@cache
def word_list() -> tuple[str, ...]:
    text = files("portabot.features.linking").joinpath("words.txt").read_text(encoding="utf-8")
    return tuple(text.split())


def make_code() -> str:
    """A new code such as `amber-falcon-river-stone` (576**4, about 1.1e11, possible codes)."""
    words = word_list()
    return "-".join(secrets.choice(words) for _ in range(CODE_WORDS))


def normalise_code(text: str) -> str:
    """What a person typed (any case, spaces or hyphens between words) in the stored form."""
    return "-".join(re.findall(r"[a-z]+", text.casefold())[:16])
