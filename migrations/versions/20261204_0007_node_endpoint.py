"""node endpoint: nodes.endpoint, the address of the node agent's gRPC endpoint

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("endpoint", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("nodes", "endpoint")
