"""The web chat's inbox: messages for a web visitor that no request of theirs answered (a message
to a person, an operator's answer, a timer's reply), waiting until the page collects them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("key", name="uq_inbox_key"),
    )
    op.create_index("ix_inbox_user_id", "inbox", ["user_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_inbox_user_id", "inbox")
    op.drop_table("inbox")
