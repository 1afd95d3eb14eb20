"""Add users.forgotten_us: when the user was last forgotten at their request.

The audit of a forgotten user showed only an emptied profile and a history fenced at the
erasure, as a retention prune leaves it: a compliance officer could not tell from Herald
that the user had asked to be forgotten, nor when it was done.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 11:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A column added alone: SQLite's batch mode adds it in place, without copying the table.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forgotten_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("forgotten_us")
