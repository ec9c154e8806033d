"""Linking's table: one-time codes, each issued to a person and used at most once. Created by the
first migrations (which predate features) and, on a database they did not build, by
`portabot migrate` as any feature's table."""

from __future__ import annotations

import sqlalchemy as sa

from portabot.storage.tables import Id, Timestamp, people

link_codes = sa.Table(
    "link_codes",
    sa.MetaData(),
    sa.Column("code", sa.String(128), primary_key=True),
    sa.Column(
        "person_id", Id, sa.ForeignKey(people.c.id, ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("used_at", Timestamp, nullable=True),
)
