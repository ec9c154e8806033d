"""Updates that arrived and wait their turn, so one sender's updates apply in the platform's order
(only with ORDER_WINDOW_MS set).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arrivals",
        sa.Column("platform", sa.String(16), primary_key=True),
        sa.Column("update_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("arrived_at", sa.Float, nullable=False, index=True),
    )
    op.create_index("ix_arrivals_sender", "arrivals", ["platform", "user_id", "sequence"])


def downgrade() -> None:
    op.drop_table("arrivals")
