"""Healthcare: an encounter may name a rendering provider beside its billing
provider (the 837P's loop 2310B when the two differ).

Revision ID: 0032
Revises: 0031
Create Date: 2026-11-30 23:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("encounters", sa.Column("rendering_provider_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_encounters_book_id_rendering_provider_id_providers"),
        "encounters",
        "providers",
        ["book_id", "rendering_provider_id"],
        ["book_id", "id"],
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_encounters_book_id_rendering_provider_id_providers"), "encounters", type_="foreignkey")
    op.drop_column("encounters", "rendering_provider_id")
