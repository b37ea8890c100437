"""Statements: a line's identity includes its bank account; a statement lists its
lines, which must add up from opening to closing; MT940 statements.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 13:20:00.000000
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f('ck_bank_statements_format'), 'bank_statements', type_='check')
    op.create_check_constraint(
        op.f('ck_bank_statements_format'), 'bank_statements',
        "format in ('camt.053', 'ofx', 'csv', 'mt940')",
    )
    op.add_column('bank_statements', sa.Column('line_ids', postgresql.ARRAY(sa.Uuid()), nullable=True))
    op.add_column('bank_statement_lines', sa.Column('bank_account', sa.Text(), server_default='', nullable=False))
    # Lines stored before keep de-duplicating against new uploads: their bank
    # account is their statement's, compacted as the importer compacts it.
    op.execute("alter table bank_statement_lines disable trigger bank_statement_lines_append_only")
    op.execute(
        "update bank_statement_lines l"
        " set bank_account = upper(regexp_replace(coalesce(s.bank_account, ''), '\\s', '', 'g'))"
        " from bank_statements s where s.book_id = l.book_id and s.id = l.statement_id"
    )
    op.execute("alter table bank_statement_lines enable trigger bank_statement_lines_append_only")
    op.drop_constraint(op.f('uq_bank_statement_lines_book_id_account_id_bank_reference'), 'bank_statement_lines', type_='unique')
    op.create_unique_constraint(
        op.f('uq_bank_statement_lines_reference'), 'bank_statement_lines',
        ['book_id', 'account_id', 'bank_account', 'bank_reference'],
    )
    op.execute(Path(__file__).with_name("0007_statement_lines.sql").read_text())


def downgrade() -> None:
    op.execute("drop function if exists ab_statement_complete() cascade")
    op.drop_constraint(op.f('uq_bank_statement_lines_reference'), 'bank_statement_lines', type_='unique')
    op.create_unique_constraint(
        op.f('uq_bank_statement_lines_book_id_account_id_bank_reference'), 'bank_statement_lines',
        ['book_id', 'account_id', 'bank_reference'],
    )
    op.drop_column('bank_statement_lines', 'bank_account')
    op.drop_column('bank_statements', 'line_ids')
    op.drop_constraint(op.f('ck_bank_statements_format'), 'bank_statements', type_='check')
    op.create_check_constraint(
        op.f('ck_bank_statements_format'), 'bank_statements', "format in ('camt.053', 'ofx', 'csv')"
    )
