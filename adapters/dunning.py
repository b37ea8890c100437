"""The dunning run (`POST /v1/dunning-runs`, `activebilling dunning run`): every open
invoice with something due, on the book's simulated clock, one transaction per
invoice (as `collect_unattempted` charges a billing run's invoices), so a run
never holds a book's customers locked while it calls a gateway, and a run cut
short is finished by the next one.

In each invoice's transaction, under the customer's and the invoice's locks
(re-read after locking, so two runs at once do each step once): the card retry
first, through the gateway path of adapters/gateways/collection.py — its
attempt queued and committed, then charged in a transaction of its own, as at
finalization — then, if something is still due, the steps billing/dunning.py
plans for `as_of`: past due, late fee, suspension, the latest reminder
(messages outbox) and write-off, each marked once in `dunning_steps`. A late-fee
invoice of a `charge_automatically` customer is charged like any finalized
invoice: queued in that transaction, charged right after its commit. Then
suspended subscriptions with nothing past due left resume (a transaction of
its own). Running it again for the same `as_of` finds every step marked and
creates nothing. A step the ledger refuses (say, a write-off into a closed
period) rolls back that invoice alone and is reported in `refused`.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import psycopg

from adapters.gateways.collection import GATEWAYS, collect_pending, queue_auto_collection
from adapters.messages.templates import render
from billing import dunning as rules
from billing.errors import InvalidBillingRequest
from billing.postgres import dunning as store
from billing.postgres.credit_notes import lock_customer, lock_invoices
from billing.postgres.customers import get_customer
from billing.postgres.events import record_event
from billing.postgres.invoices import Invoice, get_invoice
from billing.postgres.payment_methods import get_payment_method
from billing.postgres.settings import read_settings
from billing.postgres.write_offs import mark_uncollectible
from ledger.errors import LedgerError
from ledger.money import Money, minor_unit_text
from ledger.postgres.books import book_window
from ledger.postgres.unit_of_work import ConnectionSource

__all__ = ["run_dunning"]


def check_as_of(as_of: date, today: date) -> None:
    if as_of > today:
        raise InvalidBillingRequest(
            f"as_of {as_of} is after the book's today ({today}); advance the clock first"
            " (POST /v1/clock) or dun up to today",
            as_of=as_of.isoformat(),
            today=today.isoformat(),
        )


def _can_retry(conn: psycopg.Connection, book_id: uuid.UUID, invoice: Invoice) -> bool:
    customer = get_customer(conn, book_id, str(invoice.customer_id))
    if customer.collection_method != "charge_automatically":
        return False
    if customer.default_payment_method is None:
        return False
    pm = get_payment_method(conn, book_id, customer.id, str(customer.default_payment_method))
    return pm.type == "card" and pm.gateway in GATEWAYS and pm.detached_at is None


def _context(invoice: Invoice, step: rules.Step, settings: dict[str, Any]) -> dict[str, Any]:
    assert invoice.due_date is not None
    return {
        "number": invoice.number or str(invoice.id),
        "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else "",
        "due_date": invoice.due_date.isoformat(),
        "days": (step.on - invoice.due_date).days,
        "amount_due": minor_unit_text(invoice.amount_due, invoice.currency),
        "currency": invoice.currency,
        "payment_instructions": settings.get("payment_instructions") or "",
        "sender": settings.get("legal_name") or "Accounts receivable",
    }


def _queue_retry(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_id: uuid.UUID,
    customer_id: uuid.UUID,
    as_of: date,
    policy: rules.Policy,
) -> bool:
    """The retry's attempt row (the outbox of charges), if one is due on `as_of`."""
    lock_customer(conn, book_id, customer_id)
    lock_invoices(conn, book_id, [invoice_id])
    invoice = get_invoice(conn, book_id, str(invoice_id))
    facts = store.facts_of(conn, book_id, invoice)
    if not rules.plan(facts, policy, store.done_steps(conn, book_id, invoice_id), as_of).retry:
        return False
    if not _can_retry(conn, book_id, invoice):
        return False
    return queue_auto_collection(conn, book_id, str(invoice_id), as_of) is not None


def _dun_invoice(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_id: uuid.UUID,
    customer_id: uuid.UUID,
    as_of: date,
    today: date,
    policy: rules.Policy,
    settings: dict[str, Any],
    counts: dict[str, int],
    charge_after: list[uuid.UUID],
    subscription_id: uuid.UUID | None = None,
) -> None:
    if subscription_id is not None:  # it may be suspended: locked before the customer, as
        conn.execute(  # a billing run locks it (then its customer, a credit holder)
            "select 1 from subscriptions where book_id = %s and id = %s for update",
            (book_id, subscription_id),
        )
    lock_customer(conn, book_id, customer_id)
    lock_invoices(conn, book_id, [invoice_id])
    invoice = get_invoice(conn, book_id, str(invoice_id))
    facts = store.facts_of(conn, book_id, invoice)
    done = store.done_steps(conn, book_id, invoice_id)
    todo = rules.plan(facts, policy, done, as_of)
    for step in todo.skipped:
        store.mark_step(conn, book_id, invoice_id, step, as_of, "skipped")
    for step in todo.steps:
        detail: dict[str, Any] = {}
        outcome = "done"
        if step.kind == "reminder":
            message = store.queue_message(
                conn, book_id, invoice, step.key, render, _context(invoice, step, settings)
            )
            if message is None:
                outcome, detail = "skipped", {"reason": "the customer has no e-mail address"}
            else:
                detail = {"message": str(message)}
                counts["reminders"] += 1
        elif step.kind == "late_fee":
            fee = rules.late_fee_amount(policy, Money(invoice.amount_due, invoice.currency))
            fee_invoice = store.charge_late_fee(conn, book_id, invoice, fee, as_of)
            detail = {"invoice": str(fee_invoice.id) if fee_invoice else None}
            counts["late_fees"] += fee_invoice is not None
            # Like any finalization: the charge is queued here and made after the commit.
            if fee_invoice and queue_auto_collection(conn, book_id, str(fee_invoice.id), as_of):
                charge_after.append(fee_invoice.id)
        elif step.kind == "past_due":
            record_event(conn, book_id, "invoice.overdue", invoice)
            if invoice.subscription_id is not None:
                store.mark_past_due(conn, book_id, invoice.subscription_id, today)
        elif step.kind == "suspend" and invoice.subscription_id is not None:
            counts["suspended"] += store.suspend(
                conn, book_id, invoice.subscription_id, as_of, today
            )
        elif step.kind == "write_off":
            mark_uncollectible(conn, book_id, str(invoice_id), as_of)
            counts["written_off"] += 1
        store.mark_step(conn, book_id, invoice_id, step, as_of, outcome, detail)


def run_dunning(
    connect: ConnectionSource, book_id: uuid.UUID, as_of: date, today: date
) -> dict[str, Any]:
    """Dun every open invoice for `as_of` (module docstring); what the run did."""
    check_as_of(as_of, today)
    with connect() as conn:
        book_window(conn, book_id).check("as_of", as_of)
        settings = read_settings(conn, book_id)
        found = store.candidates(conn, book_id, as_of)
        conn.rollback()
    policy = rules.policy_of(settings)
    counts = dict.fromkeys(
        (
            "invoices",
            "retries",
            "retries_succeeded",
            "reminders",
            "late_fees",
            "suspended",
            "written_off",
            "resumed",
        ),
        0,
    )
    refused: list[dict[str, str]] = []
    for candidate in found:
        counts["invoices"] += 1
        mine = dict.fromkeys(counts, 0)  # counted only once the invoice's work commits
        charge_after: list[uuid.UUID] = []
        with connect() as conn:
            try:
                # The retry first, charged after its own commit (never inside the
                # transaction of the steps); the steps then see whether it paid.
                retry = _queue_retry(
                    conn, book_id, candidate.invoice_id, candidate.customer_id, as_of, policy
                )
                conn.commit()
                if retry:
                    for attempt in collect_pending(conn, book_id, str(candidate.invoice_id)):
                        counts["retries"] += 1
                        counts["retries_succeeded"] += attempt.outcome == "succeeded"
                    conn.commit()
                _dun_invoice(
                    conn,
                    book_id,
                    candidate.invoice_id,
                    candidate.customer_id,
                    as_of,
                    today,
                    policy,
                    settings,
                    mine,
                    charge_after,
                    candidate.subscription_id,
                )
                conn.commit()
            except LedgerError as exc:  # e.g. a write-off into a closed period: reported
                conn.rollback()
                refused.append({"invoice": str(candidate.invoice_id), "reason": str(exc)})
                continue
            except BaseException:
                conn.rollback()
                raise
        for name, n in mine.items():
            counts[name] += n
        for fee_invoice in charge_after:  # a queued charge of a late-fee invoice
            with connect() as conn:
                collect_pending(conn, book_id, str(fee_invoice))
                conn.commit()
    with connect() as conn:
        counts["resumed"] = len(store.resume_settled(conn, book_id, None, as_of))
        conn.commit()
    return {"object": "dunning_run", "as_of": as_of.isoformat(), **counts, "refused": refused}
