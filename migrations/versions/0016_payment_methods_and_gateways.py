"""Payments: payment methods, charge attempts, the gateways' charges and balance
transactions, payouts and disputes; customers' collection method and default payment method.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 13:59:01.321511
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('gateway_charges',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('gateway', sa.Text(), nullable=False),
    sa.Column('attempt_id', sa.Uuid(), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('fee', sa.Numeric(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('captured_on', sa.Date(), nullable=False),
    sa.Column('dispute_on', sa.Date(), nullable=True),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status in ('succeeded', 'failed', 'requires_action')", name=op.f('ck_gateway_charges_status')),
    sa.PrimaryKeyConstraint('book_id', 'id', name=op.f('pk_gateway_charges')),
    sa.UniqueConstraint('book_id', 'attempt_id', name=op.f('uq_gateway_charges_book_id_attempt_id'))
    )
    op.create_table('payouts',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('gateway', sa.Text(), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('arrival_date', sa.Date(), nullable=False),
    sa.Column('status', sa.Text(), server_default='pending', nullable=False),
    sa.Column('entry_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status in ('pending', 'paid')", name=op.f('ck_payouts_status')),
    sa.PrimaryKeyConstraint('book_id', 'id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('book_id', 'gateway', 'currency', 'arrival_date', name=op.f('uq_payouts_book_id_gateway_currency_arrival_date'))
    )
    op.create_table('disputes',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('gateway', sa.Text(), nullable=False),
    sa.Column('charge_id', sa.Text(), nullable=False),
    sa.Column('payment_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('fee', sa.Numeric(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('opened_on', sa.Date(), nullable=False),
    sa.Column('evidence_due', sa.Date(), nullable=False),
    sa.Column('status', sa.Text(), server_default='needs_response', nullable=False),
    sa.Column('closed_on', sa.Date(), nullable=True),
    sa.Column('entry_id', sa.Uuid(), nullable=True),
    sa.Column('closing_entry_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status in ('needs_response', 'won', 'lost')", name=op.f('ck_disputes_status')),
    sa.ForeignKeyConstraint(['book_id', 'charge_id'], ['gateway_charges.book_id', 'gateway_charges.id'], name=op.f('fk_disputes_book_id_charge_id_gateway_charges')),
    sa.PrimaryKeyConstraint('book_id', 'id', name=op.f('pk_disputes')),
    sa.UniqueConstraint('book_id', 'charge_id', name=op.f('uq_disputes_book_id_charge_id'))
    )
    op.create_table('gateway_balance_transactions',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('gateway', sa.Text(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('charge_id', sa.Text(), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('available_on', sa.Date(), nullable=False),
    sa.Column('payout_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("type in ('charge', 'refund', 'dispute', 'dispute_won')", name=op.f('ck_gateway_balance_transactions_type')),
    sa.ForeignKeyConstraint(['book_id', 'charge_id'], ['gateway_charges.book_id', 'gateway_charges.id'], name=op.f('fk_gateway_balance_transactions_book_id_charge_id_gateway_charges')),
    sa.PrimaryKeyConstraint('book_id', 'id', name=op.f('pk_gateway_balance_transactions'))
    )
    op.create_index(op.f('ix_gateway_balance_transactions_book_id_payout_id_available_on'), 'gateway_balance_transactions', ['book_id', 'payout_id', 'available_on'], unique=False)
    op.create_table('payment_methods',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('gateway', sa.Text(), nullable=True),
    sa.Column('token', sa.Text(), nullable=True),
    sa.Column('brand', sa.Text(), nullable=True),
    sa.Column('last4', sa.Text(), nullable=False),
    sa.Column('exp_month', sa.SmallInteger(), nullable=True),
    sa.Column('exp_year', sa.SmallInteger(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('detached_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.CheckConstraint("type <> 'card' or (gateway is not null and token is not null)", name=op.f('ck_payment_methods_card')),
    sa.CheckConstraint("type in ('card', 'sepa_debit', 'us_bank_account')", name=op.f('ck_payment_methods_type')),
    sa.ForeignKeyConstraint(['book_id', 'customer_id'], ['customers.book_id', 'customers.id'], name=op.f('fk_payment_methods_book_id_customer_id_customers')),
    sa.PrimaryKeyConstraint('book_id', 'id', name=op.f('pk_payment_methods'))
    )
    op.create_index(op.f('ix_payment_methods_book_id_customer_id'), 'payment_methods', ['book_id', 'customer_id'], unique=False)
    op.create_table('payment_attempts',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('invoice_id', sa.Uuid(), nullable=False),
    sa.Column('payment_method_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('at', sa.Date(), nullable=False),
    sa.Column('outcome', sa.Text(), server_default='pending', nullable=False),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('charge_id', sa.Text(), nullable=True),
    sa.Column('payment_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("outcome in ('pending', 'succeeded', 'failed', 'requires_action')", name=op.f('ck_payment_attempts_outcome')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payment_attempts_positive')),
    sa.ForeignKeyConstraint(['book_id', 'invoice_id'], ['invoices.book_id', 'invoices.id'], name=op.f('fk_payment_attempts_book_id_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['book_id', 'payment_method_id'], ['payment_methods.book_id', 'payment_methods.id'], name=op.f('fk_payment_attempts_book_id_payment_method_id_payment_methods')),
    sa.PrimaryKeyConstraint('book_id', 'id', name=op.f('pk_payment_attempts'))
    )
    op.create_index(op.f('ix_payment_attempts_book_id_invoice_id'), 'payment_attempts', ['book_id', 'invoice_id'], unique=False)
    op.add_column('customers', sa.Column('collection_method', sa.Text(), server_default='send_invoice', nullable=False))
    op.add_column('customers', sa.Column('default_payment_method', sa.Uuid(), nullable=True))
    op.create_table('webhook_events',
    sa.Column('book_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.Text(), nullable=False),
    sa.Column('event_id', sa.Text(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['book_id'], ['books.id'], name=op.f('fk_webhook_events_book_id_books')),
    sa.PrimaryKeyConstraint('book_id', 'provider', 'event_id', name=op.f('pk_webhook_events'))
    )
    op.execute("grant select, insert on webhook_events to activebilling_app")
    op.create_check_constraint(
        op.f('ck_customers_collection_method'),
        'customers',
        "collection_method in ('charge_automatically', 'send_invoice')",
    )
    op.execute(
        "grant select, insert, update on payment_methods, payment_attempts, gateway_charges,"
        " gateway_balance_transactions, payouts, disputes to activebilling_app"
    )


def downgrade() -> None:
    op.drop_table('webhook_events')
    op.drop_constraint(op.f('ck_customers_collection_method'), 'customers')
    op.drop_column('customers', 'default_payment_method')
    op.drop_column('customers', 'collection_method')
    op.drop_index(op.f('ix_payment_attempts_book_id_invoice_id'), table_name='payment_attempts')
    op.drop_table('payment_attempts')
    op.drop_index(op.f('ix_payment_methods_book_id_customer_id'), table_name='payment_methods')
    op.drop_table('payment_methods')
    op.drop_index(op.f('ix_gateway_balance_transactions_book_id_payout_id_available_on'), table_name='gateway_balance_transactions')
    op.drop_table('gateway_balance_transactions')
    op.drop_table('disputes')
    op.drop_table('payouts')
    op.drop_table('gateway_charges')
