"""Linking: one person's accounts on several platforms, joined by a one-time code sent from the
other platform (`/bind`, then `/in <code>`). The feature carries out linking's effects, keeps the
`link_codes` table, drops the codes of a person who is absorbed and purges spent ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from portabot.features import Effect, EffectHandler, Feature
from portabot.features.linking import storage
from portabot.features.linking.effects import IssueLinkCode, RedeemLinkCode, RevokeLinkCodes
from portabot.storage.database import Conn, Database

if TYPE_CHECKING:
    import sqlalchemy as sa


class Linking(Feature):
    name = "linking"
    effects: Mapping[type[Effect[Any]], EffectHandler] = {
        IssueLinkCode: storage.issue,
        RedeemLinkCode: storage.redeem,
        RevokeLinkCodes: storage.revoke,
    }

    @property
    def tables(self) -> Sequence[sa.Table]:  # type: ignore[override]
        # SQLAlchemy only when migrate or maintain asks: the Lambda package serves without it.
        from portabot.storage.tables import link_codes

        return (link_codes,)

    async def merge(self, conn: Conn, kept: int, absorbed: int) -> None:
        await storage.drop_codes(conn, absorbed)

    async def purge(self, db: Database, now: float) -> str:
        return await storage.purge(db, now)
