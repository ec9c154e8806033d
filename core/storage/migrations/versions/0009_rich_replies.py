"""Whole replies in the outbox (buttons, formatting, an image, an edit, a press's answer), and
the images a platform has been given once (VK's uploaded photos), so that a URL is uploaded once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("reply", sa.Text, nullable=True))
    op.create_table(
        "media",
        sa.Column("platform", sa.String(16), primary_key=True),
        sa.Column("url_key", sa.String(64), primary_key=True),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("media")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("reply")
