"""A version on each person, raised by every write of their state or accounts, so that a worker
that remembers the person can save a step in one statement that changes nothing when the person
moved on meanwhile; and, on PostgreSQL, the function that statement stops with then.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MOVED = """
CREATE FUNCTION portabot_moved() RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'the person changed since the step began' USING ERRCODE = 'PB409';
END
$$
"""
"""Called by the one-statement save when the person's version is no longer the one the step
began from: the error undoes the whole statement (the update id included)."""


def upgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("version", sa.BigInteger, nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(MOVED)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION portabot_moved()")
    with op.batch_alter_table("people") as batch:
        batch.drop_column("version")
