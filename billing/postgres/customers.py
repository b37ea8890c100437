"""Customers, and the customer credit balance read from the ledger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import InvalidBillingRequest
from billing.postings import CUSTOMER_CREDIT
from ledger.errors import NotFound
from ledger.money import check_currency

TERMS = ("net", "due_on_receipt", "end_of_month")
TAX_TREATMENTS = ("taxable", "exempt", "reverse_charge")


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


_COLUMNS = (
    "id, book_id, name, currency, email, external_id, payment_terms, payment_terms_days,"
    " tax_rate, tax_treatment, address, metadata, created_at"
)


def upsert_customer(
    conn: psycopg.Connection, book_id: uuid.UUID, spec: CustomerSpec
) -> tuple[Customer, bool]:
    """Create a customer, or update the one with the same external_id (CRM sync).

    Returns the customer and whether it was created. The currency of an
    existing customer never changes: its documents are in that currency.
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
                f"select {_COLUMNS} from customers where book_id = %s and external_id = %s"
                " for update",
                (book_id, spec.external_id),
            ).fetchone()
            if existing is not None:
                if existing["currency"] != spec.currency:
                    raise InvalidBillingRequest(
                        f"customer {spec.external_id!r} bills in {existing['currency']}; "
                        "its currency cannot change",
                    )
                row = cur.execute(
                    "update customers set name = %s, email = %s, payment_terms = %s,"
                    " payment_terms_days = %s, tax_rate = %s, tax_treatment = %s,"
                    " address = %s, metadata = %s where book_id = %s and id = %s"
                    f" returning {_COLUMNS}",
                    (
                        spec.name,
                        spec.email,
                        spec.payment_terms,
                        spec.payment_terms_days,
                        spec.tax_rate,
                        spec.tax_treatment,
                        Jsonb(spec.address),
                        Jsonb(spec.metadata),
                        book_id,
                        existing["id"],
                    ),
                ).fetchone()
                assert row is not None
                return Customer(**row), False
        row = cur.execute(
            "insert into customers (book_id, id, name, currency, email, external_id,"
            " payment_terms, payment_terms_days, tax_rate, tax_treatment, address, metadata)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (book_id, external_id) do nothing"
            f" returning {_COLUMNS}",
            (book_id, uuid.uuid4(), *values),
        ).fetchone()
    if row is None:  # a concurrent request created the same external id: update it
        return upsert_customer(conn, book_id, spec)
    return Customer(**row), True


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
    conn: psycopg.Connection, book_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[Customer]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_COLUMNS} from customers where book_id = %s"
            " and (%s::uuid is null or id > %s) order by id limit %s",
            (book_id, after, after, limit),
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
