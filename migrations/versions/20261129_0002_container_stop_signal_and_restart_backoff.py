"""container stop signal and restart back-off

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("containers", sa.Column("stop_signal", sa.String(length=16), nullable=True))
    op.add_column(
        "containers",
        sa.Column("restart_backoff_ms", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("containers", "restart_backoff_ms")
    op.drop_column("containers", "stop_signal")
