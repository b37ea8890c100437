"""Exports: per-book ERP settings and account mappings for the journal feed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 14:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FORMATS = "erp_format in ('netsuite', 'quickbooks', 'xero', 'sap')"


def upgrade() -> None:
    op.create_table('erp_settings',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('erp_format', sa.Text(), nullable=False),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint(_FORMATS, name=op.f('ck_erp_settings_erp_format')),
    sa.ForeignKeyConstraint(['book_id'], ['books.id'], name=op.f('fk_erp_settings_book_id_books')),
    sa.PrimaryKeyConstraint('book_id', 'erp_format', name=op.f('pk_erp_settings'))
    )
    op.create_table('erp_account_mappings',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('erp_format', sa.Text(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('erp_code', sa.Text(), nullable=False),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint(_FORMATS, name=op.f('ck_erp_account_mappings_erp_format')),
    sa.CheckConstraint("erp_code <> ''", name=op.f('ck_erp_account_mappings_erp_code_not_empty')),
    sa.ForeignKeyConstraint(['book_id', 'account_id'], ['accounts.book_id', 'accounts.id'], name=op.f('fk_erp_account_mappings_book_id_account_id_accounts')),
    sa.PrimaryKeyConstraint('book_id', 'erp_format', 'account_id', name=op.f('pk_erp_account_mappings'))
    )
    op.execute(
        "grant select, insert, update, delete on erp_settings, erp_account_mappings"
        " to activebilling_app"
    )


def downgrade() -> None:
    op.drop_table('erp_account_mappings')
    op.drop_table('erp_settings')
