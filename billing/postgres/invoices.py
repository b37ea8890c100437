"""Invoices: drafts, finalization (numbering, tax, posting), void, and the
figures read back from the ledger (amount paid, amount due, status)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import DocumentState, InvalidBillingRequest
from billing.invoicing import (
    DraftLine,
    check_line,
    derived_status,
    document_number,
    due_date,
    final_lines,
    line_amount,
    tax_rate_of,
)
from billing.postgres.customers import Customer, credit_balance, get_customer
from billing.postgres.events import has_event, record_event
from billing.postgres.ids import parse_id
from billing.postgres.posting import mark_billing_transaction, post_entry
from billing.postgres.settings import read_settings
from billing.postgres.usage_accruals import unbill_voided
from billing.postings import (
    AR,
    FinalLine,
    credit_application_entry,
    finalization_entry,
    invoice_doc,
)
from billing.tax import TaxRate
from ledger.errors import NotFound
from ledger.money import Money, check_currency, quantum
from ledger.postgres.books import book_window
from ledger.postgres.posting import reverse_entry


@dataclass(frozen=True, slots=True)
class LineSpec:
    description: str
    quantity: Decimal
    unit_amount: Decimal
    service_start: date | None = None
    service_end: date | None = None
    revenue_account: str = "Income:Services"
    kind: str = "one_off"
    price_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    line_no: int
    kind: str
    description: str
    quantity: Decimal
    unit_amount: Decimal
    amount: Decimal
    discount_amount: Decimal
    tax_rate: Decimal
    tax_amount: Decimal
    service_start: date | None
    service_end: date | None
    price_id: uuid.UUID | None
    revenue_account: str


@dataclass(frozen=True, slots=True)
class Invoice:
    id: uuid.UUID
    book_id: uuid.UUID
    customer_id: uuid.UUID
    subscription_id: uuid.UUID | None
    status: str  # derived: draft, open, paid, void, uncollectible
    number: str | None
    currency: str
    issue_date: date | None
    due_date: date | None
    supply_start: date | None
    supply_end: date | None
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal
    amount_paid: Decimal
    amount_credited: Decimal
    amount_written_off: Decimal
    amount_due: Decimal
    memo: str
    metadata: dict[str, Any]
    created_at: datetime
    lines: tuple[InvoiceLine, ...] = field(default=())


def create_draft(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_ref: str,
    lines: Sequence[LineSpec],
    *,
    memo: str = "",
    metadata: dict[str, Any] | None = None,
    subscription_id: uuid.UUID | None = None,
    subscription_period_start: date | None = None,
    discounts: Sequence[Decimal] | None = None,
    currency: str | None = None,
) -> Invoice | None:
    """A draft invoice; returns None when the subscription period already has one.
    In the customer's currency unless another is given (a customer may be billed in
    several; each invoice is paid in its own)."""
    customer = get_customer(conn, book_id, customer_ref)
    currency = check_currency(currency) if currency else customer.currency
    if len(lines) > 1000:
        raise InvalidBillingRequest("an invoice may have at most 1000 lines")
    for spec in lines:
        check_line(spec.description, spec.quantity, spec.service_start, spec.service_end)
    if subscription_id is None and any(s.service_start or s.service_end for s in lines):
        # A subscription's periods follow from its dates, checked when it was made.
        window = book_window(conn, book_id)
        for index, spec in enumerate(lines):
            window.check_optional(f"lines[{index}].service_start", spec.service_start)
            window.check_optional(f"lines[{index}].service_end", spec.service_end)
    _check_accounts(conn, book_id, {s.revenue_account for s in lines})
    invoice_id = uuid.uuid4()
    starts = [s.service_start for s in lines if s.service_start]
    ends = [s.service_end for s in lines if s.service_end]
    row = conn.execute(
        "insert into invoices (book_id, id, customer_id, subscription_id,"
        " subscription_period_start, status, currency, supply_start, supply_end, memo, metadata)"
        " values (%s, %s, %s, %s, %s, 'draft', %s, %s, %s, %s, %s)"
        " on conflict (book_id, subscription_id, subscription_period_start) do nothing"
        " returning id",
        (
            book_id,
            invoice_id,
            customer.id,
            subscription_id,
            subscription_period_start,
            currency,
            min(starts) if starts else None,
            max(ends) if ends else None,
            memo,
            Jsonb(metadata or {}),
        ),
    ).fetchone()
    if row is None:
        return None
    if lines:
        amounts = [line_amount(s.quantity, s.unit_amount, currency) for s in lines]
        discount_amounts = list(discounts) if discounts else [Decimal(0)] * len(lines)
        with conn.cursor() as cur:
            cur.executemany(
                "insert into invoice_lines (book_id, invoice_id, line_no, kind, description,"
                " quantity, unit_amount, amount, discount_amount, service_start, service_end,"
                " price_id, revenue_account) values"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        book_id,
                        invoice_id,
                        n,
                        s.kind,
                        s.description,
                        s.quantity,
                        s.unit_amount,
                        a.amount,
                        d,
                        s.service_start,
                        s.service_end,
                        s.price_id,
                        s.revenue_account,
                    )
                    for n, (s, a, d) in enumerate(
                        zip(lines, amounts, discount_amounts, strict=True), start=1
                    )
                ],
            )
    return get_invoice(conn, book_id, str(invoice_id))


def _check_accounts(conn: psycopg.Connection, book_id: uuid.UUID, names: set[str]) -> None:
    """Refuse a line whose revenue account does not exist now, not at finalization."""
    if not names:
        return
    rows = conn.execute(
        "select name from accounts where book_id = %s and name = any(%s) and closed_at is null",
        (book_id, sorted(names)),
    ).fetchall()
    missing = sorted(names - {r[0] for r in rows})
    if missing:
        raise InvalidBillingRequest(
            f"revenue account(s) {', '.join(missing)} do not exist in this book or are closed",
            accounts=missing,
        )


def invoice_id_of(conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str) -> uuid.UUID:
    """The id of the invoice `invoice_ref` names: its id, or its number (INV-2026-000001)."""
    try:
        return uuid.UUID(invoice_ref)
    except (ValueError, TypeError):
        pass
    row = conn.execute(
        "select id from invoices where book_id = %s and number = %s",
        (book_id, str(invoice_ref).strip()),
    ).fetchone()
    if row is None:
        return parse_id(invoice_ref, "invoice")  # raises NotFound with the usual message
    found: uuid.UUID = row[0]
    return found


def _lock_invoice(conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str) -> dict[str, Any]:
    invoice_id = invoice_id_of(conn, book_id, invoice_ref)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from invoices where book_id = %s and id = %s for update",
            (book_id, invoice_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"invoice {invoice_ref!r} does not exist in this book")
    return row


def next_number(conn: psycopg.Connection, book_id: uuid.UUID, prefix: str, year: int) -> str:
    """The next number of a series, gapless: the series row stays locked until
    the finalizing transaction ends, and a rollback gives the number back."""
    series = f"{prefix}-{year:04d}"
    row = conn.execute(
        "insert into number_series as s (book_id, series, last_value) values (%s, %s, 1)"
        " on conflict (book_id, series) do update set last_value = s.last_value + 1"
        " returning last_value",
        (book_id, series),
    ).fetchone()
    assert row is not None
    return document_number(prefix, year, int(row[0]))


def finalize_invoice(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str, issue_date: date
) -> Invoice:
    """Number, tax and post a draft; apply any customer credit (book setting)."""
    row = _lock_invoice(conn, book_id, invoice_ref)
    if row["status"] != "draft":
        raise DocumentState(
            f"invoice {row['number']} is already finalized ({row['status']})",
            invoice=str(row["id"]),
        )
    customer = get_customer(conn, book_id, str(row["customer_id"]))
    settings = read_settings(conn, book_id)
    totals = _compute(conn, book_id, row["id"], row["currency"], customer, settings)
    if totals.total.amount < 0:
        # ACCOUNTING.md: credits are never negative invoices.
        raise InvalidBillingRequest(
            f"the invoice totals {totals.total}: an invoice cannot total below zero; credit the"
            " invoice it corrects with a credit note (POST /v1/credit-notes) instead",
            total=str(totals.total.amount),
        )
    rate, finals = totals.rate, totals.finals
    subtotal, discount, tax, total = totals.subtotal, totals.discount, totals.tax, totals.total
    number = next_number(conn, book_id, "INV", issue_date.year)
    # Lines are taxed while the invoice is still a draft (its lines are frozen after).
    with conn.cursor() as cur:
        cur.executemany(
            "update invoice_lines set tax_rate = %s, tax_amount = %s"
            " where book_id = %s and invoice_id = %s and line_no = %s",
            [(rate.percent / 100, f.tax.amount, book_id, row["id"], f.line_no) for f in finals],
        )
    entry = (
        finalization_entry(row["id"], number, str(customer.id), issue_date, finals)
        if finals
        else None
    )
    entry_id = post_entry(conn, book_id, entry).id if entry is not None else None
    conn.execute(
        "update invoices set status = 'open', number = %s, issue_date = %s, due_date = %s,"
        " subtotal = %s, discount_total = %s, tax_total = %s, total = %s,"
        " finalization_entry_id = %s where book_id = %s and id = %s",
        (
            number,
            issue_date,
            due_date(issue_date, customer.payment_terms, customer.payment_terms_days),
            subtotal.amount,
            discount.amount,
            tax.amount,
            total.amount,
            entry_id,
            book_id,
            row["id"],
        ),
    )
    if (
        total.amount > 0
        and settings.get("auto_apply_credit", True)
        and credit_balance(conn, book_id, customer.id, row["currency"]) > 0
    ):  # most customers hold no credit: skip apply_credit's reads and lock
        apply_credit(conn, book_id, str(row["id"]), issue_date)
    return record_event(
        conn, book_id, "invoice.finalized", get_invoice(conn, book_id, str(row["id"]))
    )


@dataclass(frozen=True, slots=True)
class Totals:
    rate: TaxRate
    finals: list[FinalLine]
    subtotal: Money
    discount: Money
    tax: Money
    total: Money


def _compute(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_id: uuid.UUID,
    currency: str,
    customer: Customer,
    settings: dict[str, Any],
) -> Totals:
    drafts = _draft_lines(conn, book_id, invoice_id, currency)
    rate = tax_rate_of(customer.tax_rate, customer.tax_treatment)
    finals = final_lines(drafts, rate, per_invoice=settings.get("tax_level") == "per_invoice")
    zero = Money.zero(currency)
    subtotal = sum((d.amount for d in drafts), zero)
    discount = sum((d.discount or zero for d in drafts), zero)
    tax = sum((f.tax for f in finals), zero)
    return Totals(rate, finals, subtotal, discount, tax, subtotal - discount + tax)


def preview_totals(conn: psycopg.Connection, book_id: uuid.UUID, invoice: Invoice) -> Totals:
    """What finalizing a draft now would compute (the customer's tax settings may still
    change before then); the stored figures of a draft are zero until finalization."""
    customer = get_customer(conn, book_id, str(invoice.customer_id))
    return _compute(
        conn, book_id, invoice.id, invoice.currency, customer, read_settings(conn, book_id)
    )


def apply_credit(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_ref: str,
    on: date,
    amount: Decimal | None = None,
) -> Decimal:
    """Use the customer's credit balance against an open invoice; returns what was applied."""
    invoice = get_invoice(conn, book_id, invoice_ref)
    if invoice.status != "open":
        raise DocumentState(
            f"invoice {invoice.number} is {invoice.status}: nothing to apply credit to"
        )
    # Serialize credit use per customer: two invoices must not spend the same credit.
    conn.execute(
        "select 1 from customers where book_id = %s and id = %s for update",
        (book_id, invoice.customer_id),
    )
    available = credit_balance(conn, book_id, invoice.customer_id, invoice.currency)
    use = min(available, invoice.amount_due, amount if amount is not None else invoice.amount_due)
    if use <= 0:
        return Decimal(0)
    source = f"{uuid.uuid4()}"
    post_entry(
        conn,
        book_id,
        credit_application_entry(
            invoice.id,
            invoice.number or "",
            str(invoice.customer_id),
            on,
            Money(use, invoice.currency),
            source,
        ),
    )
    record_paid(conn, book_id, [invoice.id])
    return use


def apply_credit_to_open_invoices(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID, currency: str, on: date
) -> None:
    """Use the customer's credit on their open invoices, oldest due date first, while any
    is left (ACCOUNTING.md's payment allocation order)."""
    conn.execute(
        "select 1 from customers where book_id = %s and id = %s for update", (book_id, customer_id)
    )
    if credit_balance(conn, book_id, customer_id, currency) <= 0:
        return
    rows = conn.execute(
        "select id from invoices where book_id = %s and customer_id = %s and currency = %s"
        " and status = 'open' order by due_date, issue_date, number",
        (book_id, customer_id, currency),
    ).fetchall()
    amounts = receivable_amounts(conn, book_id, [r[0] for r in rows])
    for (invoice_id,) in rows:
        if amounts.get(invoice_id, (Decimal(0),))[0] <= 0:
            continue
        apply_credit(conn, book_id, str(invoice_id), on)
        if credit_balance(conn, book_id, customer_id, currency) <= 0:
            return


def void_invoice(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str, on: date
) -> Invoice:
    """Void an open invoice on which nothing was paid or credited: reverse its entry."""
    row = _lock_invoice(conn, book_id, invoice_ref)
    invoice = get_invoice(conn, book_id, str(row["id"]))
    if row["status"] == "draft":
        raise DocumentState("a draft has no number to keep: delete it instead of voiding it")
    if row["status"] != "open" or invoice.amount_paid or invoice.amount_credited:
        raise DocumentState(
            f"invoice {invoice.number} is {invoice.status} with {invoice.amount_paid} paid and"
            f" {invoice.amount_credited} credited; only an open invoice with nothing paid or"
            " credited can be voided (issue a credit note instead)",
        )
    void_entry = None
    if row["finalization_entry_id"] is not None:
        mark_billing_transaction(conn)  # the reversal names the invoice
        void_entry = reverse_entry(
            conn,
            book_id,
            str(row["finalization_entry_id"]),
            effective_date=max(on, row["issue_date"]),
            memo=f"Void of invoice {row['number']}",
        ).id
    conn.execute(
        "update invoices set status = 'void', void_entry_id = %s where book_id = %s and id = %s",
        (void_entry, book_id, row["id"]),
    )
    unbill_voided(conn, book_id, row["id"])  # what it billed of accrued usage is unbilled again
    return record_event(
        conn, book_id, "invoice.voided", get_invoice(conn, book_id, str(row["id"])), invoice
    )


def delete_draft(conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str) -> None:
    row = _lock_invoice(conn, book_id, invoice_ref)
    if row["status"] != "draft":
        raise DocumentState("only drafts can be deleted; void a finalized invoice")
    conn.execute(
        "delete from invoice_lines where book_id = %s and invoice_id = %s", (book_id, row["id"])
    )
    conn.execute("delete from invoices where book_id = %s and id = %s", (book_id, row["id"]))


def _draft_lines(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID, currency: str
) -> list[DraftLine]:
    rows = conn.execute(
        "select line_no, description, quantity, unit_amount, amount, discount_amount,"
        " revenue_account, service_start, service_end from invoice_lines"
        " where book_id = %s and invoice_id = %s order by line_no",
        (book_id, invoice_id),
    ).fetchall()
    return [
        DraftLine(
            line_no=r[0],
            description=r[1],
            quantity=r[2],
            unit_amount=r[3],
            amount=Money(r[4], currency),
            revenue_account=r[6],
            service_start=r[7],
            service_end=r[8],
            discount=Money(r[5], currency) if r[5] else None,
        )
        for r in rows
    ]


_AMOUNTS = """
select p.document,
       coalesce(sum(p.amount), 0) as due,
       coalesce(-sum(p.amount) filter (where p.dimensions->>'via' like 'payment:%%'
                                          or p.dimensions->>'via' like 'credit:%%'), 0) as paid,
       coalesce(-sum(p.amount) filter (where p.dimensions->>'via' like 'credit_note:%%'), 0)
         as credited,
       coalesce(-sum(p.amount) filter (where p.dimensions->>'via' = 'write_off'), 0)
         as written_off
  from postings p
 where p.book_id = %s and p.document = any(%s)
   and p.account_id = (select id from accounts where book_id = %s and name = %s)
 group by p.document
"""


def receivable_amounts(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Decimal, Decimal, Decimal, Decimal]]:
    """Per invoice, from its AR postings: (amount due, paid, credited, written off)."""
    docs = [invoice_doc(i) for i in invoice_ids]
    rows = conn.execute(_AMOUNTS, (book_id, docs, book_id, AR)).fetchall()
    return {uuid.UUID(r[0].split(":", 1)[1]): (r[1], r[2], r[3], r[4]) for r in rows}


def _invoice(
    row: dict[str, Any], amounts: tuple[Decimal, ...] | None, lines: tuple[InvoiceLine, ...]
) -> Invoice:
    due, paid, credited, written_off = amounts or (Decimal(0),) * 4
    q = quantum(row["currency"])

    def money(value: Decimal) -> Decimal:
        return Decimal(value).quantize(q)

    return Invoice(
        id=row["id"],
        book_id=row["book_id"],
        customer_id=row["customer_id"],
        subscription_id=row["subscription_id"],
        status=derived_status(row["status"], due)
        if (row["status"] == "open" and row["total"] > 0)
        or (row["status"] == "open" and row["total"] == 0)
        else row["status"],
        number=row["number"],
        currency=row["currency"],
        issue_date=row["issue_date"],
        due_date=row["due_date"],
        supply_start=row["supply_start"],
        supply_end=row["supply_end"],
        subtotal=money(row["subtotal"]),
        discount_total=money(row["discount_total"]),
        tax_total=money(row["tax_total"]),
        total=money(row["total"]),
        amount_paid=money(paid),
        amount_credited=money(credited),
        amount_written_off=money(written_off),
        amount_due=money(due) if row["status"] in ("open", "uncollectible") else money(Decimal(0)),
        memo=row["memo"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        lines=lines,
    )


_LINE_COLUMNS = (
    "line_no, kind, description, quantity, unit_amount, amount, discount_amount,"
    " tax_rate, tax_amount, service_start, service_end, price_id, revenue_account"
)


def _lines_of(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[InvoiceLine, ...]]:
    # Tuples, not dicts: _LINE_COLUMNS lists InvoiceLine's fields in their order, and a
    # billing run's batch reads a few thousand lines here.
    rows = conn.execute(
        f"select invoice_id, {_LINE_COLUMNS} from invoice_lines"
        " where book_id = %s and invoice_id = any(%s) order by invoice_id, line_no",
        (book_id, list(invoice_ids)),
    ).fetchall()
    out: dict[uuid.UUID, list[InvoiceLine]] = {}
    for invoice_id, *fields in rows:
        out.setdefault(invoice_id, []).append(InvoiceLine(*fields))
    return {k: tuple(v) for k, v in out.items()}


def get_invoices(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_ids: Sequence[uuid.UUID],
    *,
    receivable: Mapping[uuid.UUID, Decimal] | None = None,
) -> list[Invoice]:
    """Several invoices with their lines, in the order of `invoice_ids`, in three reads.

    `receivable`: the caller has just finalized these invoices and knows each one's
    receivable (its finalization entry's, the only posting naming it yet): nothing is
    paid, credited or written off, and the AR postings are not read (a billing run's
    batch would otherwise look its thousand documents up among the book's postings)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select * from invoices where book_id = %s and id = any(%s)",
            (book_id, list(invoice_ids)),
        ).fetchall()
    by_id = {r["id"]: r for r in rows}
    if receivable is None:
        amounts = receivable_amounts(conn, book_id, list(by_id))
    else:
        zero = Decimal(0)
        amounts = {i: (receivable.get(i, zero), zero, zero, zero) for i in by_id}
    lines = _lines_of(conn, book_id, list(by_id))
    return [_invoice(by_id[i], amounts.get(i), lines.get(i, ())) for i in invoice_ids if i in by_id]


def record_paid(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ids: Iterable[uuid.UUID]
) -> None:
    """`invoice.paid` for each invoice whose amount due a payment or credit has just
    brought to zero; once per invoice."""
    for invoice in get_invoices(conn, book_id, list(dict.fromkeys(invoice_ids))):
        if invoice.status == "paid" and not has_event(
            conn, book_id, "invoice.paid", str(invoice.id)
        ):
            record_event(conn, book_id, "invoice.paid", invoice)


def get_invoice(conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str) -> Invoice:
    """The invoice with its lines; `invoice_ref` is its id or its number."""
    invoice_id = invoice_id_of(conn, book_id, invoice_ref)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select * from invoices where book_id = %s and id = %s", (book_id, invoice_id)
        ).fetchone()
    if row is None:
        raise NotFound(f"invoice {invoice_ref!r} does not exist in this book")
    amounts = receivable_amounts(conn, book_id, [invoice_id]).get(invoice_id)
    return _invoice(row, amounts, _lines_of(conn, book_id, [invoice_id]).get(invoice_id, ()))


# How invoice lists are ordered: by number, or by issue date then number; drafts,
# which have neither yet, come last, by creation. Each order is a list of segments
# (a condition and its sort columns, unique within it), read one after the other, so
# that "by number" is an index scan of (book_id, number) rather than a sort of the
# whole book. A cursor is the last row's sort key: its segment's index, then its
# values in that segment's columns (invoice_sort_key).
INVOICE_ORDERS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "number": (
        ("number is not null", ("number",)),
        ("number is null", ("created_at", "id")),
    ),
    "date": (
        ("issue_date is not null", ("issue_date", "coalesce(number, '')", "id")),
        ("issue_date is null", ("created_at", "id")),
    ),
}


def invoice_sort_key(invoice: Invoice, order: str) -> tuple[Any, ...]:
    """The invoice's place in `order` (INVOICE_ORDERS): segment, then its values."""
    if order == "date" and invoice.issue_date is not None:
        return (0, invoice.issue_date, invoice.number or "", invoice.id)
    if order == "number" and invoice.number is not None:
        return (0, invoice.number)
    return (1, invoice.created_at, invoice.id)


def list_invoices(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    customer_id: uuid.UUID | None = None,
    status: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    order: str = "number",
    after: Sequence[Any] | None = None,
    limit: int = 100,
) -> list[Invoice]:
    """Invoices with their lines in `order` (INVOICE_ORDERS), after the sort key `after`
    (invoice_sort_key of the previous page's last one); `status` filters on the derived
    status."""
    if order not in INVOICE_ORDERS:
        raise InvalidBillingRequest(f"order must be one of {', '.join(INVOICE_ORDERS)}")
    segments = INVOICE_ORDERS[order]
    clauses = ["book_id = %(book)s"]
    params: dict[str, Any] = {"book": book_id, "limit": limit}
    if customer_id is not None:
        clauses.append("customer_id = %(customer)s")
        params["customer"] = customer_id
    if status in ("draft", "void", "uncollectible"):
        clauses.append("status = %(status)s")
        params["status"] = status
    elif status in ("open", "paid"):
        clauses.append("status = 'open'")
    if date_from is not None:
        clauses.append("issue_date >= %(from)s")
        params["from"] = date_from
    if date_to is not None:
        clauses.append("issue_date <= %(to)s")
        params["to"] = date_to
    segment, values = 0, None
    if after is not None:
        segment, values = after[0], tuple(after[1:])
        if segment not in range(len(segments)) or len(values) != len(segments[segment][1]):
            raise InvalidBillingRequest("the cursor belongs to another order")
    out: list[Invoice] = []
    with conn.cursor(row_factory=dict_row) as cur:
        while len(out) < limit and segment < len(segments):
            condition, columns = segments[segment]
            where = [*clauses, condition]
            if values is not None:
                names = ", ".join(f"%(k{i})s" for i in range(len(values)))
                where.append(f"({', '.join(columns)}) > ({names})")
                params.update({f"k{i}": v for i, v in enumerate(values)})
            rows = cur.execute(
                f"select * from invoices where {' and '.join(where)}"
                f" order by {', '.join(columns)} limit %(limit)s",
                params,
            ).fetchall()
            ids = [r["id"] for r in rows]
            amounts = receivable_amounts(conn, book_id, ids) if rows else {}
            lines = _lines_of(conn, book_id, ids) if rows else {}
            for r in rows:
                invoice = _invoice(r, amounts.get(r["id"]), lines.get(r["id"], ()))
                if status in ("open", "paid") and invoice.status != status:
                    continue
                out.append(invoice)
            if len(rows) < limit:  # this segment is done: the next one from its start
                segment, values = segment + 1, None
            else:
                values = tuple(invoice_sort_key(_invoice(rows[-1], None, ()), order)[1:])
    return out[:limit]
