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

create function ab_invoice_lines_frozen() returns trigger language plpgsql as $$
declare
  line record;
  invoice_status text;
begin
  if tg_op = 'DELETE' then line := old; else line := new; end if;
  select status into invoice_status from invoices
   where book_id = line.book_id and id = line.invoice_id;
  if invoice_status is distinct from 'draft' then
    raise exception 'lines of a finalized invoice cannot change'
      using errcode = 'check_violation', constraint = 'invoice_lines_frozen';
  end if;
  return line;
end $$;
create trigger invoice_lines_frozen before insert or update or delete on invoice_lines
  for each row execute function ab_invoice_lines_frozen();

create trigger credit_notes_append_only before update or delete on credit_notes
  for each row execute function ab_forbid_change();
create trigger refunds_append_only before update or delete on refunds
  for each row execute function ab_forbid_change();

grant select, insert, update on customers, products, prices, coupons, subscriptions,
  subscription_items, number_series, invoices, invoice_lines, payments, billing_runs
  to activebilling_app;
grant delete on invoice_lines, invoices to activebilling_app;  -- drafts only (trigger)
grant select, insert on refunds, credit_notes to activebilling_app;
