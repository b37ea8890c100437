"""Dunning: the steps done per invoice, the outbox of messages (reminders), and a
subscription's suspension day.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dunning_steps',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('invoice_id', sa.Uuid(), nullable=False),
    sa.Column('step', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('on_date', sa.Date(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("outcome in ('done', 'skipped')", name=op.f('ck_dunning_steps_outcome')),
    sa.ForeignKeyConstraint(['book_id', 'invoice_id'], ['invoices.book_id', 'invoices.id'], name=op.f('fk_dunning_steps_book_id_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('book_id', 'invoice_id', 'step', name=op.f('pk_dunning_steps'))
    )
    op.create_table('messages',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('invoice_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('recipient', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='queued', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status in ('queued', 'sent', 'failed')", name=op.f('ck_messages_status')),
    sa.ForeignKeyConstraint(['book_id', 'customer_id'], ['customers.book_id', 'customers.id'], name=op.f('fk_messages_book_id_customer_id_customers')),
    sa.ForeignKeyConstraint(['book_id', 'invoice_id'], ['invoices.book_id', 'invoices.id'], name=op.f('fk_messages_book_id_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('book_id', 'id', name=op.f('pk_messages')),
    sa.UniqueConstraint('book_id', 'invoice_id', 'kind', name=op.f('uq_messages_book_id_invoice_id_kind'))
    )
    op.create_index(op.f('ix_messages_status_next_attempt_at'), 'messages', ['status', 'next_attempt_at'], unique=False)
    op.add_column('subscriptions', sa.Column('suspended_on', sa.Date(), nullable=True))
    op.execute("grant select, insert, update on dunning_steps, messages to activebilling_app")


def downgrade() -> None:
    op.drop_column('subscriptions', 'suspended_on')
    op.drop_index(op.f('ix_messages_status_next_attempt_at'), table_name='messages')
    op.drop_table('messages')
    op.drop_table('dunning_steps')
