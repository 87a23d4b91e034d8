"""published ports: port_mappings

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "port_mappings",
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("protocol", sa.String(length=3), nullable=False),
        sa.Column("host_port", sa.Integer(), nullable=False),
        sa.Column("host_ip", sa.String(length=15), server_default="", nullable=False),
        sa.Column("container_id", sa.String(length=64), nullable=False),
        sa.Column("container_port", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("node", "protocol", "host_port", name=op.f("pk_port_mappings")),
    )
    op.create_index(
        op.f("ix_port_mappings_container_id"), "port_mappings", ["container_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_port_mappings_container_id"), table_name="port_mappings")
    op.drop_table("port_mappings")
