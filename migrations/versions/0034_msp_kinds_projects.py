"""MSP: device and user counts on one managed-services contract (a `kind` per
count, priced by the contract's `unit_prices`), and a time entry's optional
`project`.

Revision ID: 0034
Revises: 0033
Create Date: 2026-11-30 23:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing counts are devices: a contract's single `unit_price` prices devices.
    op.execute(
        "alter table contract_counts add column kind text not null default 'device'"
        " constraint ck_contract_counts_kind check (kind in ('device', 'user'))"
    )
    op.execute("alter table contract_counts drop constraint pk_contract_counts")
    op.execute(
        "alter table contract_counts add constraint pk_contract_counts"
        " primary key (book_id, contract_id, kind, date)"
    )
    op.execute("alter table time_entries add column project text")


def downgrade() -> None:
    op.execute("alter table time_entries drop column project")
    # User counts have no place in the older table: they go with the column.
    op.execute("delete from contract_counts where kind <> 'device'")
    op.execute("alter table contract_counts drop constraint pk_contract_counts")
    op.execute(
        "alter table contract_counts add constraint pk_contract_counts"
        " primary key (book_id, contract_id, date)"
    )
    op.execute("alter table contract_counts drop column kind")
