"""Credit notes: full or partial, by amount or by lines, credited to the
receivable, to customer credit, or refunded; their own gapless series
(CN-YYYY-NNNNNN). Also the reading of an invoice's lines from the ledger
(`line_states`), which refunds and write-offs share.

What a line can still give is read from the postings of its invoice
(`document = invoice:<id>`, `dimensions["line"]`): its Deferred-Revenue
balance (unearned), its income recognized at finalization or by
recognition runs less what earlier credits took as earned (earned), and
its tax less the tax parts earlier credits took back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.credit_notes import (
    CREDIT_TO,
    LineCredit,
    LineState,
    credit_note_entry,
    split_amount,
    split_lines,
    total_of,
)
from billing.errors import DocumentState, ExceedsAvailable, InvalidBillingRequest
from billing.postgres.events import record_event
from billing.postgres.invoices import Invoice, get_invoice, next_number, record_paid
from billing.postgres.posting import post_entry
from billing.postings import AR, BANK, CREDIT_LOSSES, DEFERRED, PAYMENT_ACCOUNTS, TAX, invoice_doc
from ledger.errors import NotFound
from ledger.money import Money

_LINE_TAKEN = """
select (p.dimensions->>'line')::int as line,
       coalesce(-sum(p.amount) filter (where a.name = %(deferred)s), 0) as unearned,
       coalesce(-sum(p.amount) filter (
         where a.name like 'Income:%%' and a.name not like 'Income:Contra:%%'
           and p.dimensions->>'via' in ('finalization', 'recognition')), 0) as recognized,
       coalesce(sum(p.amount) filter (
         where (a.name like 'Income:Contra:%%' or a.name = %(losses)s)
           and not p.dimensions ? 'tax'), 0) as earned_taken,
       coalesce(sum(p.amount) filter (
         where p.dimensions ? 'tax' and p.dimensions->>'via' <> 'finalization'), 0) as tax_taken
  from postings p join accounts a on a.book_id = p.book_id and a.id = p.account_id
 where p.book_id = %(book)s and p.document = %(doc)s and p.dimensions ? 'line'
 group by 1
"""


def tax_code_of(conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID) -> str:
    row = conn.execute(
        "select p.dimensions->>'tax' from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and p.document = %s and a.name = %s"
        " and p.dimensions->>'via' = 'finalization' limit 1",
        (book_id, invoice_doc(invoice_id), TAX),
    ).fetchone()
    return str(row[0]) if row and row[0] else "none"


def line_states(conn: psycopg.Connection, book_id: uuid.UUID, invoice: Invoice) -> list[LineState]:
    """Each line of a finalized invoice with what it can still give, from the ledger."""
    taken: dict[int, tuple[Decimal, Decimal, Decimal, Decimal]] = {
        r[0]: (r[1], r[2], r[3], r[4])
        for r in conn.execute(
            _LINE_TAKEN,
            {
                "deferred": DEFERRED,
                "losses": CREDIT_LOSSES,
                "book": book_id,
                "doc": invoice_doc(invoice.id),
            },
        )
    }
    code = tax_code_of(conn, book_id, invoice.id)
    currency = invoice.currency
    states = []
    for line in invoice.lines:
        unearned, recognized, earned_taken, tax_taken = taken.get(line.line_no, (Decimal(0),) * 4)
        net = Money(line.amount - line.discount_amount, currency)
        tax = Money(line.tax_amount, currency)
        states.append(
            LineState(
                line_no=line.line_no,
                net=net,
                tax=tax,
                tax_code=code,
                earned=Money(recognized - earned_taken, currency),
                unearned=Money(unearned, currency),
                tax_left=tax - Money(tax_taken, currency),
            )
        )
    return states


@dataclass(frozen=True, slots=True)
class CreditNote:
    id: uuid.UUID
    number: str
    invoice_id: uuid.UUID
    customer_id: uuid.UUID
    currency: str
    issue_date: date
    net_amount: Decimal
    tax_amount: Decimal
    total: Decimal
    reason: str
    credit_to: str
    lines: list[dict[str, Any]]
    entry_id: uuid.UUID | None
    created_at: datetime


def lock_customer(conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID) -> None:
    """Serialize what moves a customer's receivables and credit (payments,
    credit notes, refunds, write-offs, applied credit): customer row first,
    then invoice rows by id."""
    conn.execute(
        "select 1 from customers where book_id = %s and id = %s for update",
        (book_id, customer_id),
    )


def lock_invoices(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> None:
    conn.execute(
        "select 1 from invoices where book_id = %s and id = any(%s) order by id for update",
        (book_id, list(invoice_ids)),
    )


def refunded_cash_on(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID
) -> Decimal:
    """Cash already given back against an invoice: refunds' parts on it and
    credit notes refunded in cash."""
    row = conn.execute(
        "select coalesce((select sum(p.amount) from postings p where p.book_id = %(book)s"
        "   and p.document = %(doc)s and p.dimensions ? 'line'"
        "   and p.dimensions->>'via' like 'refund:%%'), 0)"
        " + coalesce((select sum(total) from credit_notes where book_id = %(book)s"
        "   and invoice_id = %(id)s and credit_to = 'refund'), 0)",
        {"book": book_id, "doc": invoice_doc(invoice_id), "id": invoice_id},
    ).fetchone()
    return Decimal(row[0]) if row else Decimal(0)


def _cash_account_for(conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID) -> str:
    """The account of the latest payment on the invoice (bank when only credit paid it)."""
    row = conn.execute(
        "select pay.method from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " join payments pay on pay.book_id = p.book_id"
        "  and 'payment:' || pay.id::text = p.dimensions->>'via'"
        " where p.book_id = %s and p.document = %s and a.name = %s"
        " order by pay.received_on desc, pay.created_at desc limit 1",
        (book_id, invoice_doc(invoice_id), AR),
    ).fetchone()
    return PAYMENT_ACCOUNTS.get(str(row[0]), BANK) if row else BANK


def create_credit_note(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_ref: str,
    issue_date: date,
    *,
    amount: Decimal | None = None,
    lines: Sequence[tuple[int, Decimal]] | None = None,
    reason: str = "",
    credit_to: str = "receivable",
    fallback_to_credit: bool = False,
) -> CreditNote:
    """Issue a credit note on an open or paid invoice (see billing.credit_notes).

    `amount` is the gross total to credit (tax included), spread over the
    lines pro rata to what each can still give; `lines` name net amounts per
    line, and each line's tax follows at its original ratio. `receivable`
    lowers the amount due (never below zero: crediting more than is due is
    refused — use customer_credit or refund for the paid part, or pass
    `fallback_to_credit` to keep the credit as customer credit then).
    """
    if credit_to not in CREDIT_TO:
        raise InvalidBillingRequest(f"credit_to must be one of {', '.join(CREDIT_TO)}")
    if (amount is None) == (not lines):
        raise InvalidBillingRequest("give either amount or lines")
    if len(reason) > 1000:
        raise InvalidBillingRequest("reason is longer than 1000 characters")
    invoice = get_invoice(conn, book_id, invoice_ref)
    lock_customer(conn, book_id, invoice.customer_id)
    lock_invoices(conn, book_id, [invoice.id])
    invoice = get_invoice(conn, book_id, str(invoice.id))
    if invoice.status not in ("open", "paid"):
        raise DocumentState(
            f"invoice {invoice.number or invoice.id} is {invoice.status}: only open or paid"
            " invoices can be credited",
            invoice=str(invoice.id),
        )
    currency = invoice.currency
    states = line_states(conn, book_id, invoice)
    credits: list[LineCredit]
    if amount is not None:
        credits = split_amount(Money.exact(amount, currency), states)
    else:
        credits = split_lines([(n, Money.exact(a, currency)) for n, a in lines or []], states)
    total = total_of(credits, currency)
    if total.amount <= 0:
        raise InvalidBillingRequest("a credit note must credit something")
    cash_account = None
    if credit_to == "receivable" and total.amount > invoice.amount_due and fallback_to_credit:
        credit_to = "customer_credit"
    if credit_to == "receivable" and total.amount > invoice.amount_due:
        raise ExceedsAvailable(
            f"{total} is more than the {invoice.amount_due} {currency} still due on"
            f" {invoice.number}; credit the rest to customer_credit or refund it",
            available=str(invoice.amount_due),
        )
    if credit_to == "refund":
        refundable = invoice.amount_paid - refunded_cash_on(conn, book_id, invoice.id)
        if total.amount > refundable:
            raise ExceedsAvailable(
                f"{total} is more than the {refundable} {currency} paid on {invoice.number}"
                " and not yet refunded",
                available=str(refundable),
            )
        cash_account = _cash_account_for(conn, book_id, invoice.id)
    credit_note_id = uuid.uuid4()
    number = next_number(conn, book_id, "CN", issue_date.year)
    entry = credit_note_entry(
        credit_note_id,
        number,
        invoice.id,
        invoice.number or "",
        str(invoice.customer_id),
        issue_date,
        credits,
        credit_to,
        cash_account,
    )
    posted = post_entry(conn, book_id, entry)
    zero = Money.zero(currency)
    net = sum((c.net for c in credits), zero)
    tax = sum((c.tax for c in credits), zero)
    lines_json = [
        {
            "line_no": c.line_no,
            "net": str(c.net.amount),
            "tax": str(c.tax.amount),
            "earned": str(c.earned.amount),
            "unearned": str(c.unearned.amount),
        }
        for c in credits
    ]
    conn.execute(
        "insert into credit_notes (book_id, id, invoice_id, customer_id, number, currency,"
        " issue_date, net_amount, tax_amount, total, reason, credit_to, lines, entry_id)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            credit_note_id,
            invoice.id,
            invoice.customer_id,
            number,
            currency,
            issue_date,
            net.amount,
            tax.amount,
            total.amount,
            reason,
            credit_to,
            Jsonb(lines_json),
            posted.id,
        ),
    )
    note = record_event(
        conn, book_id, "credit_note.created", get_credit_note(conn, book_id, str(credit_note_id))
    )
    record_paid(conn, book_id, [invoice.id])
    return note


_COLUMNS = (
    "id, number, invoice_id, customer_id, currency, issue_date, net_amount, tax_amount, total,"
    " reason, credit_to, lines, entry_id, created_at"
)


def get_credit_note(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> CreditNote:
    """A credit note by id or by number."""
    try:
        credit_note_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        credit_note_id = None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from credit_notes where book_id = %s and (id = %s or number = %s)",
            (book_id, credit_note_id, ref),
        ).fetchone()
    if row is None:
        raise NotFound(f"credit note {ref!r} does not exist in this book")
    return CreditNote(**row)


def list_credit_notes(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    invoice_id: uuid.UUID | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[CreditNote]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_COLUMNS} from credit_notes where book_id = %s"
            " and (%s::uuid is null or invoice_id = %s)"
            " and (%s::uuid is null or id > %s) order by id limit %s",
            (book_id, invoice_id, invoice_id, after, after, limit),
        ).fetchall()
    return [CreditNote(**r) for r in rows]
