"""Drop the (user, type, time) index on events: (user, time) answers the same lookups.

A user's events in a time window are few, so filtering them by type costs nothing
measurable, while every index on events costs each insert a page written at commit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_user_type_time")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_user_type_time", ["user_id", "event_type", "event_time_us"], unique=False
        )
