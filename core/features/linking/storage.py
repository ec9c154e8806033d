"""Linking's storage: link codes issued, revoked and redeemed (which merges two people into one),
as the handlers of linking's effects."""

from __future__ import annotations

from portabot.features import EffectRun
from portabot.features.linking.codes import CODE_LIFETIME, make_code
from portabot.features.linking.effects import (
    IssueLinkCode,
    LinkCodeIssued,
    Linked,
    LinkRefused,
    RedeemLinkCode,
    Refusal,
    RevokeLinkCodes,
)
from portabot.storage.database import Conn, Database, Query
from portabot.storage.limits import Limit, hit, unhit
from portabot.storage.people import Person, lock_person
from portabot.storage.purge import batch_delete, delete_in_batches

_REVOKE = Query("DELETE FROM link_codes WHERE person_id = :person_id AND used_at IS NULL")
_ISSUE = Query(
    "INSERT INTO link_codes (code, person_id, platform, created_at, expires_at)"
    " VALUES (:code, :person_id, :platform, :now, :expires_at)"
)
_FIND = Query(
    "SELECT person_id, platform, expires_at, used_at FROM link_codes WHERE code = :code"
    " {for_update}"
)
_USE = Query("UPDATE link_codes SET used_at = :now WHERE code = :code")
_DROP = Query("DELETE FROM link_codes WHERE person_id = :person_id")
_SPENT = batch_delete("link_codes", "code", "used_at IS NOT NULL OR expires_at < :before")
EXPIRED_CODES_KEPT = 86_400.0
"""An expired code is kept a day, so that whoever tries it soon after hears that it expired
rather than that it never existed."""
GUESSES = 30
"""Wrong codes everyone together may send in a window of CODE_LIFETIME (LINK_CODE_GUESSES)."""


def guess_budget(guesses: int) -> Limit:
    """The budget of wrong codes shared by every person, cookie, address and platform: a fresh
    web cookie is a fresh person, so the flow's per-person count alone does not bound guessing."""
    return Limit("link-codes", guesses, CODE_LIFETIME)


async def revoke_codes(conn: Conn, person_id: int) -> None:
    await conn.execute(_REVOKE, person_id=person_id)


async def issue_code(conn: Conn, person_id: int, platform: str, now: float) -> LinkCodeIssued:
    """A new code for the person; any earlier unused one stops working."""
    await revoke_codes(conn, person_id)
    code = make_code()
    expires_at = now + CODE_LIFETIME
    await conn.execute(
        _ISSUE, code=code, person_id=person_id, platform=platform, now=now, expires_at=expires_at
    )
    return LinkCodeIssued(code, expires_at)


async def redeem_code(
    conn: Conn,
    redeemer: Person,
    platform: str,
    code: str,
    now: float,
    *,
    guesses: int = GUESSES,
) -> tuple[Linked | LinkRefused, Person | None]:
    """Check the code against the shared budget of wrong ones; on success the code's issuer
    is to absorb the redeemer. Returns the result and, when linked, the issuer (locked), whom the
    caller merges the redeemer into."""
    budget = guess_budget(guesses)
    # Counted before the look-up (and taken back when right), so that concurrent guesses can't
    # all pass one check; the row stays locked until this update commits.
    over = await hit(conn, [], now, [budget])
    if over is not None:
        return LinkRefused(Refusal.TOO_MANY, over[1]), None
    row = await conn.fetch_one(_FIND, code=code)
    if row is None or row["used_at"] is not None:
        return LinkRefused(Refusal.UNKNOWN), None
    issuer_id: int = row["person_id"]
    if issuer_id == redeemer.id:
        return LinkRefused(Refusal.SAME_PERSON), None
    if row["expires_at"] <= now:
        return LinkRefused(Refusal.EXPIRED), None
    issuer = await lock_person(conn, issuer_id)
    if issuer is None:
        return LinkRefused(Refusal.UNKNOWN), None
    if row["platform"] == platform or set(issuer.platforms) & set(redeemer.platforms):
        return LinkRefused(Refusal.SAME_PLATFORM), None
    await conn.execute(_USE, now=now, code=code)
    await unhit(conn, budget, now)
    return Linked(tuple(sorted({*issuer.platforms, *redeemer.platforms}))), issuer


async def drop_codes(conn: Conn, person_id: int) -> None:
    """A person absorbed into another: their codes go with them."""
    await conn.execute(_DROP, person_id=person_id)


async def purge(db: Database, now: float) -> str:
    """Codes used, and codes that expired more than EXPIRED_CODES_KEPT ago."""
    deleted = await delete_in_batches(db, _SPENT, before=now - EXPIRED_CODES_KEPT)
    return f"link codes: {deleted} deleted (used, or expired more than a day ago)"


# The handlers of linking's effects (registered by the Linking feature).


async def issue(run: EffectRun, effect: IssueLinkCode) -> LinkCodeIssued:
    assert run.message is not None
    return await issue_code(run.conn, run.person.id, run.message.platform, run.now)


async def revoke(run: EffectRun, effect: RevokeLinkCodes) -> None:
    await revoke_codes(run.conn, run.person.id)


async def redeem(run: EffectRun, effect: RedeemLinkCode) -> Linked | LinkRefused:
    assert run.message is not None
    redeemer = run.person
    result, issuer = await redeem_code(
        run.conn,
        redeemer,
        run.message.platform,
        effect.code,
        run.now,
        guesses=run.settings.link_code_guesses,
    )
    if issuer is not None:
        await run.merge_into(issuer)
    return result
