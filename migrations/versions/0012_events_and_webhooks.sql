-- Events: the outbox. A row is written in the transaction of the change it
-- describes (billing/postgres/events.py), so a rolled-back change has none.
create table events (
  book_id uuid not null,
  id text not null,
  sequence bigint generated always as identity not null,
  type text not null,
  object_id text,
  created_at timestamptz not null default now(),
  data jsonb not null,
  constraint pk_events primary key (book_id, id),
  constraint uq_events_sequence unique (sequence),
  constraint fk_events_book_id_books foreign key (book_id) references books (id),
  constraint ck_events_id check (id like 'evt\_%')
);
create index ix_events_book_id_sequence on events (book_id, sequence);
create index ix_events_book_id_type_sequence on events (book_id, type, sequence);
create index ix_events_book_id_object_id_sequence on events (book_id, object_id, sequence);

create table webhook_endpoints (
  book_id uuid not null,
  id uuid not null,
  url text not null,
  enabled_events text[] not null default '{}',
  secret text not null,
  allow_private_network boolean not null default false,
  status text not null default 'enabled',
  disabled_reason text,
  consecutive_failures integer not null default 0,
  created_at timestamptz not null default now(),
  constraint pk_webhook_endpoints primary key (book_id, id),
  constraint fk_webhook_endpoints_book_id_books foreign key (book_id) references books (id),
  constraint ck_webhook_endpoints_status check (status in ('enabled', 'disabled', 'deleted'))
);

create table webhook_deliveries (
  book_id uuid not null,
  id uuid not null,
  endpoint_id uuid not null,
  event_id text not null,
  event_sequence bigint not null,
  object_id text,
  status text not null default 'pending',
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  constraint pk_webhook_deliveries primary key (book_id, id),
  constraint fk_webhook_deliveries_book_id_endpoint_id_webhook_endpoints
    foreign key (book_id, endpoint_id) references webhook_endpoints (book_id, id),
  constraint fk_webhook_deliveries_book_id_event_id_events
    foreign key (book_id, event_id) references events (book_id, id),
  constraint ck_webhook_deliveries_status check (status in ('pending', 'succeeded', 'failed'))
);
-- The worker's queue: due pending deliveries, and "is an older one of this object pending".
create index ix_webhook_deliveries_due on webhook_deliveries (next_attempt_at)
  where status = 'pending';
create index ix_webhook_deliveries_pending_object
  on webhook_deliveries (book_id, endpoint_id, object_id, event_sequence)
  where status = 'pending';

create table webhook_attempts (
  book_id uuid not null,
  id bigint generated always as identity not null,
  delivery_id uuid not null,
  endpoint_id uuid not null,
  event_id text not null,
  attempted_at timestamptz not null,
  status text not null,
  response_code integer,
  error text,
  constraint pk_webhook_attempts primary key (book_id, id),
  constraint fk_webhook_attempts_book_id_delivery_id_webhook_deliveries
    foreign key (book_id, delivery_id) references webhook_deliveries (book_id, id),
  constraint ck_webhook_attempts_status check (status in ('succeeded', 'failed'))
);
create index ix_webhook_attempts_book_id_endpoint_id_id
  on webhook_attempts (book_id, endpoint_id, id);

-- Fan-out in the event's own transaction: one delivery per enabled endpoint that
-- wants the type (no types: all; `kind.*`: all of a kind).
create function ab_events_fan_out() returns trigger language plpgsql as $$
begin
  insert into webhook_deliveries (book_id, id, endpoint_id, event_id, event_sequence, object_id)
  select new.book_id, gen_random_uuid(), w.id, new.id, new.sequence, new.object_id
    from webhook_endpoints w
   where w.book_id = new.book_id and w.status = 'enabled'
     and (w.enabled_events = '{}' or new.type = any (w.enabled_events)
          or split_part(new.type, '.', 1) || '.*' = any (w.enabled_events)
          or '*' = any (w.enabled_events));
  return null;
end
$$;
create trigger events_fan_out after insert on events
  for each row execute function ab_events_fan_out();

grant select, insert on events to activebilling_app;
grant select, insert, update on webhook_endpoints, webhook_deliveries to activebilling_app;
grant select, insert on webhook_attempts to activebilling_app;
