"""Replies that rode in a webhook response, kept a day: a re-delivery answers with them when the
response never reached the platform.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inline_replies",
        sa.Column("platform", sa.String(16), primary_key=True),
        sa.Column("update_id", sa.String(64), primary_key=True),
        sa.Column("replies", sa.Text, nullable=False),
        sa.Column("replied_at", sa.Float, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("inline_replies")
