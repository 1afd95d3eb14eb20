"""Drop the unique constraint on messages.dedup_key: the primary key holds limits now.

A message id is the digest of its dedup key (``message_id_for``), so the primary key
already admits one message per key. The second unique index cost every new message a
page written at commit, for nothing the first did not do.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 20:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLite keeps the constraint unnamed; this convention names it for batch mode.
_SQLITE_NAME = "uq_messages_dedup_key"
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_POSTGRESQL_NAME = "messages_dedup_key_key"  # PostgreSQL's own name for it


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot drop a constraint: batch mode copies the table without it.
        with op.batch_alter_table("messages", naming_convention=_NAMING) as batch_op:
            batch_op.drop_constraint(_SQLITE_NAME, type_="unique")
    else:
        op.drop_constraint(_POSTGRESQL_NAME, "messages", type_="unique")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("messages") as batch_op:
            batch_op.create_unique_constraint(_SQLITE_NAME, ["dedup_key"])
    else:
        op.create_unique_constraint(_POSTGRESQL_NAME, "messages", ["dedup_key"])
