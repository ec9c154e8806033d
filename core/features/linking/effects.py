"""Linking's effects (what its states ask of the pipeline) and their results."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from portabot.features import Effect


@dataclass(frozen=True, slots=True)
class IssueLinkCode(Effect["LinkCodeIssued"]):
    """Make a one-time code that links another platform's account to this person."""


@dataclass(frozen=True, slots=True)
class RedeemLinkCode(Effect["Linked | LinkRefused"]):
    """Link this person with the person who issued `code` (merging the two)."""

    code: str


@dataclass(frozen=True, slots=True)
class RevokeLinkCodes(Effect[None]):
    """Invalidate this person's unused codes."""


LinkingEffect = IssueLinkCode | RedeemLinkCode | RevokeLinkCodes


@dataclass(frozen=True, slots=True)
class LinkCodeIssued:
    code: str
    expires_at: float


class Refusal(enum.Enum):
    UNKNOWN = "unknown"
    """No such code, or it was used or revoked."""
    EXPIRED = "expired"
    SAME_PERSON = "same_person"
    """The code is this person's own (or the accounts are linked already)."""
    SAME_PLATFORM = "same_platform"
    """The code was made on the platform it is sent from, or both have an account there."""
    TOO_MANY = "too_many"
    """Everyone together has sent more wrong codes than the window allows (LINK_CODE_GUESSES)."""


@dataclass(frozen=True, slots=True)
class Linked:
    platforms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LinkRefused:
    reason: Refusal
    retry_after: float = 0.0
    """Seconds until codes are taken again (TOO_MANY)."""


LinkingResult = LinkCodeIssued | Linked | LinkRefused
