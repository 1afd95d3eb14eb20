"""Add messages.cancel_requested: a rule's cancel holds for the messages being sent.

A message of a rule that `herald messages cancel --rule` cancelled while it was being
sent keeps the cancel's reason here; its attempt, unless it was sent, ends it cancelled
instead of putting it back in the queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A column added alone: SQLite's batch mode adds it in place, without copying the table.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancel_requested", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested")
