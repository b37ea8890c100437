-- Billing documents (revision 0002). A finalized invoice never changes: only
-- its lifecycle status moves on (open → void or uncollectible); its lines are
-- frozen with it. Corrections are credit notes.

create function ab_invoice_frozen() returns trigger language plpgsql as $$
begin
  if old.status <> 'draft' then
    if (to_jsonb(new) - 'status' - 'void_entry_id' - 'metadata')
       is distinct from (to_jsonb(old) - 'status' - 'void_entry_id' - 'metadata') then
      raise exception 'invoice % is finalized and cannot change; issue a credit note', old.number
        using errcode = 'check_violation', constraint = 'invoices_frozen';
    end if;
    if new.status = 'draft' then
      raise exception 'invoice % is finalized and cannot return to draft', old.number
        using errcode = 'check_violation', constraint = 'invoices_frozen';
    end if;
  end if;
  return new;
end $$;
create trigger invoices_frozen before update on invoices
  for each row execute function ab_invoice_frozen();

create function ab_invoice_delete() returns trigger language plpgsql as $$
begin
  if old.status <> 'draft' then
    raise exception 'invoice % is finalized; void it instead of deleting it', old.number
      using errcode = 'check_violation', constraint = 'invoices_frozen';
  end if;
  return old;
end $$;
create trigger invoices_delete_drafts_only before delete on invoices
  for each row execute function ab_invoice_delete();

-- Lines change only while their invoice is a draft. One set-based check per
-- statement (transition tables), not a lookup per row. A line whose invoice
-- does not exist (yet) passes here and is the foreign key's business: a
-- billing run writes an invoice's lines just before the invoice itself, in
-- one transaction, with that key deferred — lines written together with
-- their invoice, never added to one that already exists finalized.
create function ab_invoice_lines_frozen() returns trigger language plpgsql as $$
begin
  if exists (
    select 1 from ab_changed_lines l
      join invoices i on i.book_id = l.book_id and i.id = l.invoice_id
     where i.status <> 'draft') then
    raise exception 'lines of a finalized invoice cannot change'
      using errcode = 'check_violation', constraint = 'invoice_lines_frozen';
  end if;
  if tg_op = 'UPDATE' then  -- the rows' former invoices too
    if exists (
      select 1 from ab_old_lines l
        join invoices i on i.book_id = l.book_id and i.id = l.invoice_id
       where i.status <> 'draft') then
      raise exception 'lines of a finalized invoice cannot change'
        using errcode = 'check_violation', constraint = 'invoice_lines_frozen';
    end if;
  end if;
  return null;
end $$;
create trigger invoice_lines_frozen_insert after insert on invoice_lines
  referencing new table as ab_changed_lines
  for each statement execute function ab_invoice_lines_frozen();
create trigger invoice_lines_frozen_update after update on invoice_lines
  referencing old table as ab_old_lines new table as ab_changed_lines
  for each statement execute function ab_invoice_lines_frozen();
create trigger invoice_lines_frozen_delete after delete on invoice_lines
  referencing old table as ab_changed_lines
  for each statement execute function ab_invoice_lines_frozen();

create trigger credit_notes_append_only before update or delete on credit_notes
  for each row execute function ab_forbid_change();
create trigger refunds_append_only before update or delete on refunds
  for each row execute function ab_forbid_change();

grant select, insert, update on customers, products, prices, coupons, subscriptions,
  subscription_items, number_series, invoices, invoice_lines, payments, billing_runs
  to activebilling_app;
grant delete on invoice_lines, invoices to activebilling_app;  -- drafts only (trigger)
grant select, insert on refunds, credit_notes to activebilling_app;
