"""Shared steps of the payment tests: a customer with a card, an invoice of 100 + 8 tax."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.integration.http_fixtures import auth


def create_customer(
    client: Any, key: str, collection_method: str = "send_invoice", **extra: Any
) -> dict[str, Any]:
    body = {
        "name": f"Customer {uuid.uuid4().hex[:6]}",
        "currency": "USD",
        "tax_rate": "0.08",
        "collection_method": collection_method,
        **extra,
    }
    created = client.post("/v1/customers", json=body, headers=auth(key))
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def add_card(
    client: Any, key: str, customer: str, token: str = "pm_card_visa", default: bool = True
) -> dict[str, Any]:
    body = {"type": "card", "gateway": "fake", "token": token, "default": default}
    created = client.post(f"/v1/customers/{customer}/payment-methods", json=body, headers=auth(key))
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def create_invoice(
    client: Any, key: str, customer: str, amount: str = "100.00", finalize: bool = True
) -> dict[str, Any]:
    body = {
        "customer": customer,
        "lines": [{"description": "Consulting", "unit_amount": amount}],
        "auto_finalize": finalize,
    }
    created = client.post("/v1/invoices", json=body, headers=auth(key))
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def entries_of_kind(
    conn: psycopg.Connection, book_id: uuid.UUID, kind: str
) -> list[list[tuple[str, str]]]:
    """Each entry of that metadata kind as its sorted (account, amount) postings."""
    rows = conn.execute(
        "select e.id, a.name, p.amount from journal_entries e"
        " join postings p on p.book_id = e.book_id and p.entry_id = e.id"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where e.book_id = %s and e.metadata->>'kind' = %s order by e.recorded_at, e.id",
        (book_id, kind),
    ).fetchall()
    out: dict[Any, list[tuple[str, str]]] = {}
    for entry_id, account, amount in rows:
        out.setdefault(entry_id, []).append((account, f"{amount:.2f}"))
    return [sorted(v) for v in out.values()]


def account_balance(conn: psycopg.Connection, book_id: uuid.UUID, account: str) -> str:
    row = conn.execute(
        "select coalesce(sum(p.amount), 0) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and a.name = %s",
        (book_id, account),
    ).fetchone()
    assert row is not None
    return f"{row[0]:.2f}"


def table_counts(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, ...]:
    row = conn.execute(
        "select (select count(*) from payment_methods where book_id = %(b)s),"
        " (select count(*) from payment_attempts where book_id = %(b)s),"
        " (select count(*) from gateway_charges where book_id = %(b)s),"
        " (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from payments where book_id = %(b)s)",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return tuple(row)
