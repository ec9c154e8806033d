"""Updates the flow failed on: how often, the last error, and whether they were given up.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "failed_updates",
        sa.Column("platform", sa.String(16), primary_key=True),
        sa.Column("update_id", sa.String(64), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.String(200), nullable=False),
        sa.Column("first_at", sa.Float, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("failed_updates")
