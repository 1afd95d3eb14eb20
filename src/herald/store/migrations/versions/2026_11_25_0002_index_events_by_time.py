"""Index events by event time (retention), drop the unused index on arrival time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_received")
        batch_op.create_index("ix_events_time", ["event_time_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_time")
        batch_op.create_index("ix_events_received", ["received_us"], unique=False)
