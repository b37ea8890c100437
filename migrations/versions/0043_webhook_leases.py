"""Webhook deliveries are leased, not locked, while they are sent.

The worker claims a batch (`status = 'sending'`, a lease: its backend's pid
and start, `lease_until`, a token) in a short committed transaction, sends
outside any transaction, and records the results in another. A delivery whose
lease ran out, or whose claiming backend is gone (the worker died), is
claimable again; the token fences a late result out of a re-claimed row.
"Is an older one of this object still open" and the per-endpoint batch read
`pending` and `sending` rows alike, hence the indexes on both.

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-01 03:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0043"
down_revision: str | None = "0042"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
alter table webhook_deliveries
  add column lease_until timestamptz,
  add column leased_at timestamptz,
  add column lease_pid integer,
  add column lease_token uuid,
  drop constraint ck_webhook_deliveries_status,
  add constraint ck_webhook_deliveries_status
    check (status in ('pending', 'sending', 'succeeded', 'failed'));
drop index ix_webhook_deliveries_pending_object;
create index ix_webhook_deliveries_open_object
  on webhook_deliveries (book_id, endpoint_id, object_id, event_sequence)
  where status in ('pending', 'sending');
create index ix_webhook_deliveries_open_endpoint
  on webhook_deliveries (book_id, endpoint_id, event_sequence)
  where status in ('pending', 'sending');
create index ix_webhook_deliveries_sending on webhook_deliveries (lease_until)
  where status = 'sending';
"""
    )


def downgrade() -> None:
    op.execute(
        """
update webhook_deliveries set status = 'pending' where status = 'sending';
drop index ix_webhook_deliveries_sending;
drop index ix_webhook_deliveries_open_endpoint;
drop index ix_webhook_deliveries_open_object;
create index ix_webhook_deliveries_pending_object
  on webhook_deliveries (book_id, endpoint_id, object_id, event_sequence)
  where status = 'pending';
alter table webhook_deliveries
  drop constraint ck_webhook_deliveries_status,
  add constraint ck_webhook_deliveries_status
    check (status in ('pending', 'succeeded', 'failed')),
  drop column lease_token,
  drop column lease_pid,
  drop column leased_at,
  drop column lease_until;
"""
    )
