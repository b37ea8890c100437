"""Services (MSP): rate cards, contracts, device counts, milestones, contract
periods and time entries.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 14:10:00.000000
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revision 0009's postings trigger, with `contract` among billing's documents
# (billing.postings.BILLING_DOCUMENT_KINDS): retainer draw-down and expiry name one.
TRIGGER = """
create or replace function ab_postings_billing_documents() returns trigger language plpgsql as $$
declare
  bad record;
begin
  if coalesce(current_setting('activebilling.writer', true), '') = 'billing' then
    return null;
  end if;
  select entry_id, line_no, document into bad
    from new_postings
   where document ~ '^(%s):'
   limit 1;
  if found then
    raise exception 'posting %% of entry %% names %%, a billing document: such postings are written only by the billing services',
      bad.line_no, bad.entry_id, bad.document
      using errcode = 'check_violation', constraint = 'postings_billing_document';
  end if;
  return null;
end $$;
"""

TABLES = (
    "rate_cards",
    "contracts",
    "contract_counts",
    "contract_milestones",
    "contract_periods",
    "time_entries",
)


def upgrade() -> None:
    op.execute(Path(__file__).with_name("0011_services_contracts.sql").read_text())
    names = ", ".join(TABLES)
    op.execute(f"grant select, insert, update on {names} to activebilling_app")
    op.execute(TRIGGER % "invoice|payment|credit_note|refund|contract")


def downgrade() -> None:
    op.execute(TRIGGER % "invoice|payment|credit_note|refund")
    for table in reversed(TABLES):
        op.execute(f"drop table {table}")
