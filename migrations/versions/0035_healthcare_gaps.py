"""Healthcare: an encounter may name a rendering provider beside its billing
provider (the 837P's loop 2310B when the two differ); 835 files refused whole
are kept in `remittance_quarantine` (insert and read only for the application).

Revision ID: 0035
Revises: 0034
Create Date: 2026-11-30 23:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


GRANTS = "grant select, insert on remittance_quarantine to activebilling_app;"


def upgrade() -> None:
    op.create_table(
        "remittance_quarantine",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "received_at",
            sa.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["book_id"], ["books.id"], name=op.f("fk_remittance_quarantine_book_id_books")
        ),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_remittance_quarantine")),
        sa.UniqueConstraint(
            "book_id", "file_sha256", name=op.f("uq_remittance_quarantine_book_id_file_sha256")
        ),
    )
    op.create_index(
        op.f("ix_remittance_quarantine_book_id_received_at"),
        "remittance_quarantine",
        ["book_id", "received_at"],
        unique=False,
    )
    op.execute(GRANTS)
    op.add_column("encounters", sa.Column("rendering_provider_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_encounters_book_id_rendering_provider_id_providers"),
        "encounters",
        "providers",
        ["book_id", "rendering_provider_id"],
        ["book_id", "id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_remittance_quarantine_book_id_received_at"), table_name="remittance_quarantine"
    )
    op.drop_table("remittance_quarantine")
    op.drop_constraint(op.f("fk_encounters_book_id_rendering_provider_id_providers"), "encounters", type_="foreignkey")
    op.drop_column("encounters", "rendering_provider_id")
