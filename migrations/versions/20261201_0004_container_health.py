"""container health check state

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "container_health",
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failing_streak", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "log",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        sa.Column("exec_id", sa.String(length=76), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["container_id"],
            ["containers.id"],
            name=op.f("fk_container_health_container_id_containers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("container_id", name=op.f("pk_container_health")),
    )
    op.create_index(op.f("ix_container_health_node"), "container_health", ["node"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_container_health_node"), table_name="container_health")
    op.drop_table("container_health")
