-- CRM sync (adapters/crm): per-book provider settings and mappings, the link of a
-- CRM record to its customer, closed-won deals already turned into subscriptions,
-- the outbound queue fed from the events outbox, and the sync log.
create table crm_connections (
  book_id uuid not null,
  provider text not null,
  fields jsonb not null default '{}'::jsonb,
  outbound jsonb not null default '{}'::jsonb,
  products jsonb not null default '{}'::jsonb,
  cursor text,
  synced_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint pk_crm_connections primary key (book_id, provider),
  constraint fk_crm_connections_book_id_books foreign key (book_id) references books (id),
  constraint ck_crm_connections_provider check (provider in ('salesforce', 'hubspot'))
);

create table crm_links (
  book_id uuid not null,
  provider text not null,
  record_id text not null,
  customer_id uuid not null,
  last_values jsonb not null default '{}'::jsonb,
  pushed jsonb,
  pushed_on date,
  synced_at timestamptz not null default now(),
  constraint pk_crm_links primary key (book_id, provider, record_id),
  constraint fk_crm_links_book_id_customer_id_customers
    foreign key (book_id, customer_id) references customers (book_id, id),
  constraint ck_crm_links_provider check (provider in ('salesforce', 'hubspot'))
);
create index ix_crm_links_book_id_customer_id on crm_links (book_id, customer_id);

create table crm_deals (
  book_id uuid not null,
  provider text not null,
  deal_id text not null,
  subscription_id uuid not null,
  created_at timestamptz not null default now(),
  constraint pk_crm_deals primary key (book_id, provider, deal_id),
  constraint fk_crm_deals_book_id_subscription_id_subscriptions
    foreign key (book_id, subscription_id) references subscriptions (book_id, id)
);

create table crm_deliveries (
  book_id uuid not null,
  id uuid not null,
  provider text not null,
  record_id text not null,
  customer_id uuid not null,
  event_id text,
  status text not null default 'pending',
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  last_error text,
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  constraint pk_crm_deliveries primary key (book_id, id),
  constraint fk_crm_deliveries_book_id_event_id_events
    foreign key (book_id, event_id) references events (book_id, id),
  constraint ck_crm_deliveries_status
    check (status in ('pending', 'succeeded', 'unchanged', 'failed'))
);
create index ix_crm_deliveries_due on crm_deliveries (next_attempt_at) where status = 'pending';
create index ix_crm_deliveries_pending_record on crm_deliveries (book_id, provider, record_id)
  where status = 'pending';

create table crm_sync_log (
  book_id uuid not null,
  id bigint generated always as identity not null,
  provider text not null,
  record_id text,
  customer_id uuid,
  kind text not null,
  field text,
  crm_value jsonb,
  billing_value jsonb,
  resolution text,
  message text,
  at timestamptz not null default now(),
  constraint pk_crm_sync_log primary key (book_id, id),
  constraint fk_crm_sync_log_book_id_books foreign key (book_id) references books (id),
  constraint ck_crm_sync_log_kind check (kind in
    ('created', 'updated', 'unchanged', 'conflict', 'subscription', 'skipped', 'error', 'pushed'))
);

-- A delivery without an event is the worker's daily refresh of a record whose
-- status can change with the date alone (an invoice falls overdue, a trial ends).
-- The outbound delivery kind beside webhooks: a billing event about a customer
-- linked to a CRM record queues one write-back of its billing status, in the
-- event's own transaction (so a rolled-back change queues nothing).
create function ab_events_crm_fan_out() returns trigger language plpgsql as $$
declare
  ref text := coalesce(new.data->'object'->>'customer_id', new.data->'object'->>'customer');
begin
  if split_part(new.type, '.', 1) not in ('invoice', 'payment', 'subscription', 'credit_note')
     or ref is null or ref !~ '^[0-9a-fA-F-]{36}$' then
    return null;
  end if;
  insert into crm_deliveries (book_id, id, provider, record_id, customer_id, event_id)
  select new.book_id, gen_random_uuid(), l.provider, l.record_id, l.customer_id, new.id
    from crm_links l
   where l.book_id = new.book_id and l.customer_id = ref::uuid;
  return null;
end
$$;
create trigger events_crm_fan_out after insert on events
  for each row execute function ab_events_crm_fan_out();

grant select, insert, update on crm_connections, crm_links, crm_deliveries to activebilling_app;
grant select, insert on crm_deals, crm_sync_log to activebilling_app;
