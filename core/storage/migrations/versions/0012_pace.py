"""The send schedules that pace API sends across every worker and container (rate limits).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # UNLOGGED on PostgreSQL: no WAL, so a reservation's commit waits for no disk flush (it
    # halves its cost); after a crash the table starts empty, which only forgets a few seconds
    # of schedule. SQLite has no such thing.
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "pace",
        sa.Column("scope", sa.String(128), primary_key=True),
        sa.Column("next_at", sa.Float, nullable=False, index=True),
        sa.Column("step", sa.Float, nullable=False),
        prefixes=unlogged,
    )


def downgrade() -> None:
    op.drop_table("pace")
