"""agent_interfaces: the agents' declared interfaces, cached from their replies

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_interfaces",
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), server_default=sa.text("''"), nullable=False),
        sa.Column("interface", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("fetched_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("agent"),
    )


def downgrade() -> None:
    op.drop_table("agent_interfaces")
