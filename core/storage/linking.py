"""Link codes: issue, revoke, and redeem (which merges two people into one)."""

from __future__ import annotations

import sqlalchemy as sa
from databases.core import Connection

from core.conversation.codes import CODE_LIFETIME, make_code
from core.conversation.effects import LinkCodeIssued, Linked, LinkRefused, Refusal
from core.storage.people import Person, absorb, lock_person
from core.storage.tables import link_codes


async def revoke_codes(conn: Connection, person_id: int) -> None:
    await conn.execute(
        link_codes.delete().where(
            link_codes.c.person_id == person_id, link_codes.c.used_at.is_(None)
        )
    )


async def issue_code(conn: Connection, person_id: int, platform: str, now: float) -> LinkCodeIssued:
    """A new code for the person; any earlier unused one stops working."""
    await revoke_codes(conn, person_id)
    code = make_code()
    expires_at = now + CODE_LIFETIME
    await conn.execute(
        link_codes.insert().values(
            code=code, person_id=person_id, platform=platform, created_at=now, expires_at=expires_at
        )
    )
    return LinkCodeIssued(code, expires_at)


async def redeem_code(
    conn: Connection, redeemer: Person, platform: str, code: str, now: float
) -> tuple[Linked | LinkRefused, Person | None]:
    """Check the code; on success the code's issuer absorbs the redeemer. Returns the result and,
    when linked, the issuer (locked) whom the conversation continues with."""
    row = await conn.fetch_one(
        sa.select(link_codes).where(link_codes.c.code == code).with_for_update()
    )
    if row is None or row._mapping["used_at"] is not None:
        return LinkRefused(Refusal.UNKNOWN), None
    issuer_id: int = row._mapping["person_id"]
    if issuer_id == redeemer.id:
        return LinkRefused(Refusal.SAME_PERSON), None
    if row._mapping["expires_at"] <= now:
        return LinkRefused(Refusal.EXPIRED), None
    issuer = await lock_person(conn, issuer_id)
    if issuer is None:
        return LinkRefused(Refusal.UNKNOWN), None
    if row._mapping["platform"] == platform or set(issuer.platforms) & set(redeemer.platforms):
        return LinkRefused(Refusal.SAME_PLATFORM), None
    await conn.execute(link_codes.update().where(link_codes.c.code == code).values(used_at=now))
    await absorb(conn, kept=issuer.id, absorbed=redeemer.id)
    platforms = tuple(sorted({*issuer.platforms, *redeemer.platforms}))
    return Linked(platforms), Person(issuer.id, issuer.conversation, platforms)
