"""hosts: the inventory of every host ever seen (discoveries and replies); a fleet's
hosts in host order (paged)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("identity", sa.String(length=255), nullable=False),
        sa.Column("facts", sa.Text(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("classes", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("agents", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("inventory_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("identity"),
    )
    op.create_index("ix_hosts_last_seen", "hosts", ["last_seen"], unique=False)
    op.create_index(
        "ix_plans_parent_label", "plans", ["parent_plan_id", "label", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_plans_parent_label", table_name="plans")
    op.drop_index("ix_hosts_last_seen", table_name="hosts")
    op.drop_table("hosts")
