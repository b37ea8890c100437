"""Events fan out to webhook and CRM deliveries once per statement, not once per row.

The two fan-out triggers on `events` (0012, 0020) ran a PL/pgSQL function and an
INSERT … SELECT for every event: a billing run's COPY of a thousand
`invoice.finalized` events ran two thousand of them, each reading the event's
JSON again for its customer. Statement triggers over the inserted rows (a
transition table) make the same deliveries with one INSERT … SELECT each per
statement; a single event's insert gets the same deliveries as before.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-01 03:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0042"
down_revision: str | None = "0041"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        drop trigger events_fan_out on events;
        drop trigger events_crm_fan_out on events;

        create function ab_events_fan_out_rows() returns trigger language plpgsql as $$
        begin
          insert into webhook_deliveries
                 (book_id, id, endpoint_id, event_id, event_sequence, object_id)
          select e.book_id, gen_random_uuid(), w.id, e.id, e.sequence, e.object_id
            from new_events e
            join webhook_endpoints w on w.book_id = e.book_id and w.status = 'enabled'
             and (w.enabled_events = '{}' or e.type = any (w.enabled_events)
                  or split_part(e.type, '.', 1) || '.*' = any (w.enabled_events)
                  or '*' = any (w.enabled_events))
           order by e.sequence, w.id;
          return null;
        end
        $$;
        create trigger events_fan_out after insert on events
          referencing new table as new_events
          for each statement execute function ab_events_fan_out_rows();

        create function ab_events_crm_fan_out_rows() returns trigger language plpgsql as $$
        begin
          -- No CRM link in the book: nothing to read the events' JSON for.
          if not exists (select 1 from crm_links l
                          where l.book_id in (select distinct book_id from new_events)) then
            return null;
          end if;
          insert into crm_deliveries (book_id, id, provider, record_id, customer_id, event_id)
          select e.book_id, gen_random_uuid(), l.provider, l.record_id, l.customer_id, e.id
            from (select book_id, id, sequence,
                         coalesce(data->'object'->>'customer_id',
                                  data->'object'->>'customer') as ref
                    from new_events
                   where split_part(type, '.', 1)
                         in ('invoice', 'payment', 'subscription', 'credit_note')) e
            join crm_links l on l.book_id = e.book_id
             and l.customer_id = (case when e.ref ~ '^[0-9a-fA-F-]{36}$'
                                       then e.ref::uuid end)
           order by e.sequence, l.provider, l.record_id;
          return null;
        end
        $$;
        create trigger events_crm_fan_out after insert on events
          referencing new table as new_events
          for each statement execute function ab_events_crm_fan_out_rows();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop trigger events_fan_out on events;
        drop trigger events_crm_fan_out on events;
        drop function ab_events_fan_out_rows();
        drop function ab_events_crm_fan_out_rows();
        create trigger events_fan_out after insert on events
          for each row execute function ab_events_fan_out();
        create trigger events_crm_fan_out after insert on events
          for each row execute function ab_events_crm_fan_out();
        """
    )
