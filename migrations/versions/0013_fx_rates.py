"""Foreign exchange: rates per book, month-end revaluations of foreign receivables.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 14:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fx_rates",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("base", sa.Text(), nullable=False),
        sa.Column("quote", sa.Text(), nullable=False),
        sa.Column("rate", sa.Numeric(), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("rate > 0", name=op.f("ck_fx_rates_positive")),
        sa.CheckConstraint("base <> quote", name=op.f("ck_fx_rates_two_currencies")),
        sa.ForeignKeyConstraint(["book_id"], ["books.id"], name=op.f("fk_fx_rates_book_id_books")),
        sa.ForeignKeyConstraint(
            ["base"], ["currencies.code"], name=op.f("fk_fx_rates_base_currencies")
        ),
        sa.ForeignKeyConstraint(
            ["quote"], ["currencies.code"], name=op.f("fk_fx_rates_quote_currencies")
        ),
        sa.PrimaryKeyConstraint("book_id", "base", "quote", "date", name=op.f("pk_fx_rates")),
    )
    op.create_table(
        "fx_revaluations",
        sa.Column("book_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("functional_currency", sa.Text(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=True),
        sa.Column("reversal_entry_id", sa.Uuid(), nullable=True),
        sa.Column(
            "lines",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["book_id"], ["books.id"], name=op.f("fk_fx_revaluations_book_id_books")
        ),
        sa.PrimaryKeyConstraint("book_id", "id", name=op.f("pk_fx_revaluations")),
        sa.UniqueConstraint("book_id", "as_of", name=op.f("uq_fx_revaluations_book_id_as_of")),
    )
    # Rates may be corrected (same pair and date); revaluations are written once.
    op.execute("grant select, insert, update on fx_rates to activebilling_app")
    op.execute("grant select, insert on fx_revaluations to activebilling_app")


def downgrade() -> None:
    op.drop_table("fx_revaluations")
    op.drop_table("fx_rates")
