"""Customers, and the customer credit balance read from the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import InvalidBillingRequest
from billing.postgres.events import record_event
from billing.postings import AR, CUSTOMER_CREDIT
from ledger.errors import Conflict, NotFound
from ledger.money import check_currency

TERMS = ("net", "due_on_receipt", "end_of_month")
TAX_TREATMENTS = ("taxable", "exempt", "reverse_charge")
COLLECTION_METHODS = ("charge_automatically", "send_invoice")


@dataclass(frozen=True, slots=True)
class CustomerSpec:
    name: str
    currency: str
    email: str | None = None
    external_id: str | None = None
    payment_terms: str = "net"
    payment_terms_days: int = 30
    tax_rate: Decimal = Decimal(0)
    tax_treatment: str = "taxable"
    address: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    # None on an upsert of an existing customer keeps what it has (new: send_invoice).
    collection_method: str | None = None
    default_payment_method: uuid.UUID | None = None

    def validate(self) -> None:
        if not self.name.strip():
            raise InvalidBillingRequest("a customer needs a name")
        check_currency(self.currency)
        if self.payment_terms not in TERMS:
            raise InvalidBillingRequest(f"payment_terms must be one of {', '.join(TERMS)}")
        if not 0 <= self.payment_terms_days <= 3650:
            raise InvalidBillingRequest("payment_terms_days must be between 0 and 3650")
        if not (self.tax_rate.is_finite() and 0 <= self.tax_rate < 1):
            raise InvalidBillingRequest(
                'tax_rate is a fraction between 0 and 1, e.g. "0.10" for 10 %'
            )
        if self.tax_treatment not in TAX_TREATMENTS:
            raise InvalidBillingRequest(f"tax_treatment must be one of {', '.join(TAX_TREATMENTS)}")
        if self.collection_method is not None and self.collection_method not in COLLECTION_METHODS:
            raise InvalidBillingRequest(
                f"collection_method must be one of {', '.join(COLLECTION_METHODS)}"
            )


@dataclass(frozen=True, slots=True)
class Customer:
    id: uuid.UUID
    book_id: uuid.UUID
    name: str
    currency: str
    email: str | None
    external_id: str | None
    payment_terms: str
    payment_terms_days: int
    tax_rate: Decimal
    tax_treatment: str
    address: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime
    collection_method: str = "send_invoice"
    default_payment_method: uuid.UUID | None = None


_COLUMNS = (
    "id, book_id, name, currency, email, external_id, payment_terms, payment_terms_days,"
    " tax_rate, tax_treatment, address, metadata, created_at, collection_method,"
    " default_payment_method"
)


def check_default_payment_method(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID, pm: uuid.UUID | None
) -> None:
    """A default payment method is one of the customer's own, still attached."""
    if pm is None:
        return
    row = conn.execute(
        "select 1 from payment_methods where book_id = %s and id = %s and customer_id = %s"
        " and detached_at is null",
        (book_id, pm, customer_id),
    ).fetchone()
    if row is None:
        raise InvalidBillingRequest(
            f"payment method {pm} is not an attached payment method of this customer",
            default_payment_method=str(pm),
        )


def upsert_customer(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    spec: CustomerSpec,
    *,
    given: Collection[str] | None = None,
) -> tuple[Customer, bool]:
    """Create a customer, or update the one with the same external_id (CRM sync).

    Returns the customer and whether it was created. The update is a merge:
    only the fields named in `given` (the ones the caller sent; None: all of
    them) change, the others keep their values, so a CRM that sends only the
    fields it owns wipes nothing. The currency of an existing customer never
    changes: its documents are in that currency.
    """
    spec.validate()
    values = (
        spec.name,
        spec.currency,
        spec.email,
        spec.external_id,
        spec.payment_terms,
        spec.payment_terms_days,
        spec.tax_rate,
        spec.tax_treatment,
        Jsonb(spec.address),
        Jsonb(spec.metadata),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        if spec.external_id is not None:
            existing = cur.execute(
                "select id, currency from customers where book_id = %s and external_id = %s"
                " for update",
                (book_id, spec.external_id),
            ).fetchone()
            if existing is not None:
                if existing["currency"] != spec.currency:
                    raise InvalidBillingRequest(
                        f"customer {spec.external_id!r} bills in {existing['currency']}; "
                        "its currency cannot change",
                    )
                fields = _UPDATABLE if given is None else [f for f in _UPDATABLE if f in given]
                changes = {name: getattr(spec, name) for name in fields}
                if given is None:  # a whole spec: None in these two means "keep"
                    for name in ("collection_method", "default_payment_method"):
                        if changes[name] is None:
                            del changes[name]
                return update_customer(conn, book_id, str(existing["id"]), changes), False
        if spec.default_payment_method is not None:  # a new customer has none yet
            raise InvalidBillingRequest(
                "a new customer has no payment methods yet: attach one"
                ' (POST /v1/customers/{id}/payment-methods) with "default": true',
                default_payment_method=str(spec.default_payment_method),
            )
        row = cur.execute(
            "insert into customers (book_id, id, name, currency, email, external_id,"
            " payment_terms, payment_terms_days, tax_rate, tax_treatment, address, metadata,"
            " collection_method)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (book_id, external_id) do nothing"
            f" returning {_COLUMNS}",
            (book_id, uuid.uuid4(), *values, spec.collection_method or "send_invoice"),
        ).fetchone()
    if row is None:  # a concurrent request created the same external id: update it
        return upsert_customer(conn, book_id, spec, given=given)
    return record_event(conn, book_id, "customer.created", Customer(**row)), True


def get_customer(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Customer:
    """A customer by id, or by external id."""
    try:
        customer_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        customer_id = None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from customers where book_id = %s"
            " and (id = %s or external_id = %s)",
            (book_id, customer_id, ref),
        ).fetchone()
    if row is None:
        raise NotFound(f"customer {ref!r} does not exist in this book", customer=ref)
    return Customer(**row)


def list_customers(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    after: uuid.UUID | None,
    limit: int,
    search: str | None = None,
) -> list[Customer]:
    """Customers by id; `search` keeps those whose name, email or external id
    contains it (any case)."""
    pattern = None
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_COLUMNS} from customers where book_id = %s"
            " and (%s::uuid is null or id > %s)"
            " and (%s::text is null or name ilike %s or email ilike %s or external_id ilike %s)"
            " order by id limit %s",
            (book_id, after, after, pattern, pattern, pattern, pattern, limit),
        ).fetchall()
    return [Customer(**r) for r in rows]


def credit_balance(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID, currency: str
) -> Decimal:
    """What the business owes the customer as credit (positive), from the ledger."""
    row = conn.execute(
        "select coalesce(-sum(p.amount), 0) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and a.name = %s and p.customer_id = %s and p.currency = %s",
        (book_id, CUSTOMER_CREDIT, str(customer_id), currency),
    ).fetchone()
    return Decimal(row[0]) if row else Decimal(0)


def balances_by_currency(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID
) -> dict[str, tuple[Decimal, Decimal]]:
    """(due on invoices, credit) in each currency the customer has postings in: a
    customer may be billed in several (one-off invoices in another currency)."""
    rows = conn.execute(
        "select p.currency, coalesce(sum(p.amount) filter (where a.name = %s), 0),"
        " coalesce(-sum(p.amount) filter (where a.name = %s), 0) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and a.name in (%s, %s) and p.customer_id = %s"
        " group by p.currency order by p.currency",
        (AR, CUSTOMER_CREDIT, book_id, AR, CUSTOMER_CREDIT, str(customer_id)),
    ).fetchall()
    return {r[0]: (Decimal(r[1]), Decimal(r[2])) for r in rows}


_UPDATABLE = (
    "name",
    "email",
    "external_id",
    "payment_terms",
    "payment_terms_days",
    "tax_rate",
    "tax_treatment",
    "address",
    "metadata",
    "collection_method",
    "default_payment_method",
)


def cleared(changes: dict[str, Any]) -> dict[str, Any]:
    """The changes with `null` read as "clear this field": a nullable field
    (email, external_id) becomes null, any other its default, as for a new
    customer (tax_rate 0, payment terms net 30, taxable, no address or metadata)."""
    defaults = CustomerSpec(name="", currency="", collection_method="send_invoice")
    return {
        name: getattr(defaults, name) if value is None and name in _NOT_NULL else value
        for name, value in changes.items()
    }


_NOT_NULL = frozenset(
    {"name", "payment_terms", "payment_terms_days", "tax_rate", "tax_treatment"}
    | {"address", "metadata", "collection_method"}
)


def update_customer(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, changes: dict[str, Any]
) -> Customer:
    """Change some fields of a customer (its currency never changes); the
    others keep their values, and `null` clears a field (see `cleared`).

    Setting an `external_id` that another customer of the book already has is
    a conflict: one CRM record maps to one customer.
    """
    unknown = sorted(set(changes) - set(_UPDATABLE))
    if unknown:
        raise InvalidBillingRequest(f"these customer fields cannot change: {', '.join(unknown)}")
    changes = cleared(changes)
    current = get_customer(conn, book_id, ref)
    merged = {name: changes.get(name, getattr(current, name)) for name in ("currency", *_UPDATABLE)}
    CustomerSpec(**merged).validate()
    check_default_payment_method(conn, book_id, current.id, merged["default_payment_method"])
    external_id = merged["external_id"]
    if external_id is not None and external_id != current.external_id:
        other = conn.execute(
            "select id from customers where book_id = %s and external_id = %s and id <> %s",
            (book_id, external_id, current.id),
        ).fetchone()
        if other is not None:
            raise Conflict(
                f"external_id {external_id!r} already belongs to customer {other[0]}",
                external_id=external_id,
                customer=str(other[0]),
            )
    assignments = ", ".join(f"{name} = %({name})s" for name in _UPDATABLE)
    params = {
        **merged,
        "address": Jsonb(merged["address"]),
        "metadata": Jsonb(merged["metadata"]),
        "book": book_id,
        "id": current.id,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"update customers set {assignments} where book_id = %(book)s and id = %(id)s"
            f" returning {_COLUMNS}",
            params,
        ).fetchone()
    assert row is not None
    updated = Customer(**row)
    if updated == current:  # a sync resending what is there changed nothing: no event
        return updated
    return record_event(conn, book_id, "customer.updated", updated, current)


def receivable_balance(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID, currency: str
) -> Decimal:
    """What the customer owes on invoices (their AR postings), from the ledger."""
    row = conn.execute(
        "select coalesce(sum(p.amount), 0) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and a.name = %s and p.customer_id = %s and p.currency = %s",
        (book_id, AR, str(customer_id), currency),
    ).fetchone()
    return Decimal(row[0]) if row else Decimal(0)


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry_id: uuid.UUID
    effective_date: date
    kind: str  # invoice, payment, credit_note, refund, void, credit_application, other
    document: str | None
    reference: str | None  # the document's own number (invoice, credit note), if it has one
    invoices: tuple[str, ...]  # numbers of the invoices this entry touched
    description: str
    amount: Decimal  # positive: the customer owes more; negative: less
    balance: Decimal  # running balance after this line


@dataclass(frozen=True, slots=True)
class Statement:
    customer_id: uuid.UUID
    currency: str
    date_from: date
    date_to: date
    opening_balance: Decimal
    lines: tuple[StatementLine, ...]
    closing_balance: Decimal


_STATEMENT = """
select e.id, e.effective_date, e.memo, e.metadata, e.reverses_entry_id,
       array_agg(distinct p.document) filter (where p.document is not null) as documents,
       sum(p.amount) as amount
  from postings p
  join accounts a on a.book_id = p.book_id and a.id = p.account_id
  join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id
 where p.book_id = %(book)s and p.customer_id = %(customer)s and p.currency = %(currency)s
   and a.name in (%(ar)s, %(credit)s)
   and p.effective_date between %(from)s and %(to)s
 group by e.id, e.effective_date, e.memo, e.metadata, e.reverses_entry_id, e.recorded_at
 order by e.effective_date, e.recorded_at, e.id
"""


def statement(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_id: uuid.UUID,
    currency: str,
    date_from: date,
    date_to: date,
) -> Statement:
    """The customer's account between two dates (inclusive), from their receivable
    and customer-credit postings: what they owe net of the credit they hold.

    Entries that only move value between the two (credit applied to an
    invoice) change nothing for the customer and are left out.
    """
    if date_to < date_from:
        raise InvalidBillingRequest("`to` must not be before `from`")
    params = {
        "book": book_id,
        "customer": str(customer_id),
        "currency": currency,
        "ar": AR,
        "credit": CUSTOMER_CREDIT,
        "from": date_from,
        "to": date_to,
    }
    row = conn.execute(
        "select coalesce(sum(p.amount), 0) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %(book)s and p.customer_id = %(customer)s"
        " and p.currency = %(currency)s and a.name in (%(ar)s, %(credit)s)"
        " and p.effective_date < %(from)s",
        params,
    ).fetchone()
    opening = Decimal(row[0]) if row else Decimal(0)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_STATEMENT, params).fetchall()
    numbers = _document_numbers(conn, book_id, [d for r in rows for d in r["documents"] or ()])
    balance = opening
    lines: list[StatementLine] = []
    for r in rows:
        amount = Decimal(r["amount"])
        if amount == 0:
            continue
        balance += amount
        documents = sorted(r["documents"] or ())
        invoices = [d for d in documents if d.startswith("invoice:")]
        kind = _kind(r["metadata"], r["reverses_entry_id"], invoices)
        own = [d for d in documents if d.startswith(f"{kind}:")]
        document = (own or invoices or documents or [None])[0]
        lines.append(
            StatementLine(
                entry_id=r["id"],
                effective_date=r["effective_date"],
                kind=kind,
                document=document,
                reference=numbers.get(document) if document else None,
                invoices=tuple(numbers[d] for d in invoices if d in numbers),
                description=r["memo"],
                amount=amount,
                balance=balance,
            )
        )
    return Statement(customer_id, currency, date_from, date_to, opening, tuple(lines), balance)


def _kind(metadata: dict[str, Any], reverses: uuid.UUID | None, invoices: list[str]) -> str:
    if reverses is not None:
        return "void" if invoices else "reversal"
    kind = metadata.get("kind") if isinstance(metadata, dict) else None
    return kind if isinstance(kind, str) and kind else "other"


def _document_numbers(
    conn: psycopg.Connection, book_id: uuid.UUID, documents: list[str | None]
) -> dict[str, str]:
    """Invoice and credit-note numbers for `invoice:<id>` / `credit_note:<id>` documents."""
    wanted: dict[str, list[uuid.UUID]] = {"invoice": [], "credit_note": []}
    for document in documents:
        if not document:
            continue
        kind, _, raw = document.partition(":")
        if kind in wanted:
            try:
                wanted[kind].append(uuid.UUID(raw))
            except ValueError:
                continue
    found: dict[str, str] = {}
    for kind, table in (("invoice", "invoices"), ("credit_note", "credit_notes")):
        if wanted[kind]:
            rows = conn.execute(
                f"select id, number from {table} where book_id = %s and id = any(%s)",
                (book_id, wanted[kind]),
            ).fetchall()
            found.update({f"{kind}:{r[0]}": r[1] for r in rows if r[1]})
    return found
