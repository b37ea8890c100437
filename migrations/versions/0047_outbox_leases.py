"""E-mail messages and CRM write-backs are leased, not locked, while they are sent.

As webhook deliveries since 0043 (adapters/leases.py): the sender claims a batch
(`status = 'sending'`, a lease: its backend's pid and start, `lease_until`, a
token) in a short committed transaction, sends outside any transaction, and
records the results in another. A row whose lease ran out, or whose claiming
backend is gone (the sender died), is claimable again; the token fences a late
result out of a re-claimed row.

Revision ID: 0047
Revises: 0046
Create Date: 2026-12-01 06:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0047"
down_revision: str | None = "0046"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEASE_COLUMNS = """
  add column lease_until timestamptz,
  add column leased_at timestamptz,
  add column lease_pid integer,
  add column lease_token uuid,
"""
_DROP_LEASE_COLUMNS = """
  drop column lease_token,
  drop column lease_pid,
  drop column leased_at,
  drop column lease_until
"""


def upgrade() -> None:
    op.execute(
        f"""
alter table messages {_LEASE_COLUMNS}
  drop constraint ck_messages_status,
  add constraint ck_messages_status
    check (status in ('queued', 'sending', 'sent', 'failed'));
alter table crm_deliveries {_LEASE_COLUMNS}
  drop constraint ck_crm_deliveries_status,
  add constraint ck_crm_deliveries_status
    check (status in ('pending', 'sending', 'succeeded', 'unchanged', 'failed'));
create index ix_crm_deliveries_sending on crm_deliveries (lease_until)
  where status = 'sending';
"""
    )


def downgrade() -> None:
    op.execute(
        f"""
update messages set status = 'queued' where status = 'sending';
alter table messages
  drop constraint ck_messages_status,
  add constraint ck_messages_status check (status in ('queued', 'sent', 'failed')),
  {_DROP_LEASE_COLUMNS};
update crm_deliveries set status = 'pending' where status = 'sending';
drop index ix_crm_deliveries_sending;
alter table crm_deliveries
  drop constraint ck_crm_deliveries_status,
  add constraint ck_crm_deliveries_status
    check (status in ('pending', 'succeeded', 'unchanged', 'failed')),
  {_DROP_LEASE_COLUMNS};
"""
    )
