"""Manual journals cannot settle billing documents; `verify` checks every
invoice's settlement (issue 7, item 5; ACCOUNTING.md "Manual journals and
billing documents").

The worked example: a 100.00 invoice, 40.01 paid by bank transfer, 59.99 due.
A manual entry naming the invoice used to take its amount due to 52.99 while
40.01 stayed paid, and `verify` passed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg
from psycopg import sql

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.postgres.posting import post_entry
from billing.postgres.verify import verify_invoices
from billing.postings import BILLING_DOCUMENT_KINDS
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.sealer import seal_pending
from tests.billing.test_http_invoices import customer, draft, finalize, line
from tests.conftest import APP_ROLE, BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, counts, open_client
from tests.integration.test_verify import run_cli

ISSUE = date(2026, 1, 10)
AR = "Assets:Receivable:Trade"
BANK = "Assets:Bank:Operating"


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", ISSUE)


def invoice_100_paid_40_01(client: Any, book: BookFixture) -> dict[str, Any]:
    cid = customer(client, book)
    invoice = finalize(client, book, draft(client, book, cid, line("Plan", "1", "100.00"))["id"])
    paid = client.post(
        "/v1/payments",
        json={
            "customer": cid,
            "amount": "40.01",
            "currency": "USD",
            "method": "bank_transfer",
            "invoice": invoice["id"],
        },
        headers=auth(book.admin_key),
    )
    assert paid.status_code == 201, paid.text
    shown = show(client, book, invoice["id"])
    assert (shown["total"], shown["amount_paid"], shown["amount_due"]) == (
        "100.00",
        "40.01",
        "59.99",
    )
    return shown


def show(client: Any, book: BookFixture, invoice_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/invoices/{invoice_id}", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def manual(
    amount: str, document: str | None = None, customer_id: str | None = None
) -> dict[str, Any]:
    """Bank debit, AR credit: what settling an invoice by hand would look like."""
    return {
        "effective_date": "2026-01-10",
        "memo": "settled by hand",
        "postings": [
            {"account": BANK, "amount": amount, "currency": "USD"},
            {
                "account": AR,
                "amount": f"-{amount}",
                "currency": "USD",
                "document": document,
                "customer": customer_id,
            },
        ],
    }


def refused(
    client: Any, runtime: Runtime, book: BookFixture, path: str, body: Any, code: str
) -> dict[str, Any]:
    with runtime.connection() as conn:
        before = counts(conn, book.id)
    problem = assert_problem(client.post(path, json=body, headers=auth(book.admin_key)), 422, code)
    with runtime.connection() as conn:
        assert counts(conn, book.id) == before  # nothing written, not even the idempotency key
    return problem


def test_manual_entry_naming_this_books_invoice_is_refused_and_due_stays_59_99(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    invoice = invoice_100_paid_40_01(client, sim)
    problem = refused(
        client,
        runtime,
        sim,
        "/v1/journal-entries",
        manual("7.00", f"invoice:{invoice['id']}"),
        "billing_document",
    )
    assert (problem["posting"], problem["field"]) == (1, "document")
    assert "written only by the billing services" in problem["detail"]
    shown = show(client, sim, invoice["id"])
    assert (shown["amount_paid"], shown["amount_due"]) == ("40.01", "59.99")


def test_batch_names_the_entry_and_posting_of_a_billing_document(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    invoice = invoice_100_paid_40_01(client, sim)
    fine = manual("1.00")
    bad = manual("7.00", f"invoice:{invoice['id']}")
    problem = refused(
        client,
        runtime,
        sim,
        "/v1/journal-entries/batch",
        {"entries": [fine, bad]},
        "billing_document",
    )
    assert (problem["entry"], problem["posting"], problem["field"]) == (1, 1, "document")


def test_another_books_invoice_and_unknown_kinds_and_customers_are_unknown_references(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    other = make_book(runtime, "USD", ISSUE)
    elsewhere = invoice_100_paid_40_01(client, other)
    cases = [
        (manual("7.00", f"invoice:{elsewhere['id']}"), "document", "does not exist in this book"),
        (manual("7.00", "garbage:doc"), "document", "not a kind of document"),
        (manual("7.00", "INV-1"), "document", "not a kind of document"),
        (manual("7.00", f"payment:{uuid.uuid4()}"), "document", "does not exist in this book"),
        (manual("7.00", "credit_note:not-an-id"), "document", "does not exist in this book"),
        (manual("7.00", None, elsewhere["customer"]), "customer", "does not exist in this book"),
        (manual("7.00", None, "cus_1"), "customer", "does not exist in this book"),
    ]
    for body, field, says in cases:
        problem = refused(client, runtime, sim, "/v1/journal-entries", body, "unknown_reference")
        assert (problem["posting"], problem["field"]) == (1, field), problem
        assert says in problem["detail"], problem
    assert show(client, other, elsewhere["id"])["amount_due"] == "59.99"


def test_a_customer_of_the_book_may_be_named(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    cid = customer(client, sim)
    body = manual("7.00", None, cid)
    body["postings"][1]["account"] = "Liabilities:Customer-Credit"
    r = client.post("/v1/journal-entries", json=body, headers=auth(sim.admin_key))
    assert r.status_code == 201, r.text
    assert [(p["account"], p["amount"], p["customer"]) for p in r.json()["postings"]] == [
        (BANK, "7.00", None),
        ("Liabilities:Customer-Credit", "-7.00", cid),
    ]


def test_manual_reversal_of_an_invoice_entry_is_refused(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    invoice = invoice_100_paid_40_01(client, sim)
    with runtime.connection() as conn:
        row = conn.execute(
            "select finalization_entry_id from invoices where book_id = %s and id = %s",
            (sim.id, invoice["id"]),
        ).fetchone()
    assert row is not None
    refused(
        client,
        runtime,
        sim,
        f"/v1/journal-entries/{row[0]}/reverse",
        {},
        "invalid_entry",
    )
    assert show(client, sim, invoice["id"])["amount_due"] == "59.99"


@pytest.mark.parametrize("kind", BILLING_DOCUMENT_KINDS)
def test_the_database_refuses_billing_documents_outside_billing(
    app_conn: psycopg.Connection, book: BookFixture, kind: str
) -> None:
    """A raw session as the application's role: the trigger holds the same kinds."""
    accounts = dict(
        app_conn.execute("select name, id from accounts where book_id = %s", (book.id,))
    )
    statement = """
        with e as (
          insert into journal_entries (book_id, id, effective_date, idempotency_key,
                                       request_hash)
          values (%(book)s, %(entry)s, '2026-03-10', %(key)s, 'h') returning id)
        insert into postings (book_id, entry_id, line_no, account_id, amount, currency,
                              effective_date, document)
        select %(book)s, e.id, n, a, amt, 'USD', '2026-03-10', d from e,
          (values (1, %(bank)s::uuid, 5.00, null), (2, %(ar)s::uuid, -5.00, %(doc)s))
            as v(n, a, amt, d)
    """
    params = {
        "book": book.id,
        "entry": uuid.uuid4(),
        "key": f"raw-{kind}",
        "bank": accounts[BANK],
        "ar": accounts[AR],
        "doc": f"{kind}:{uuid.uuid4()}",
    }
    with pytest.raises(pg.CheckViolation) as exc_info:
        app_conn.execute(statement, params)
    assert exc_info.value.diag.constraint_name == "postings_billing_document"
    # What the billing services do: declare the transaction theirs.
    with app_conn.transaction():
        app_conn.execute("select set_config('activebilling.writer', 'billing', true)")
        app_conn.execute(statement, params)
    assert app_conn.execute("select current_setting('activebilling.writer', true)").fetchone() in (
        ("",),
        (None,),
    )


def test_verify_names_an_invoice_whose_settlement_no_longer_adds_up(
    client: Any,
    runtime: Runtime,
    sim: BookFixture,
    owner_conn: psycopg.Connection,
    database_url: str,
) -> None:
    invoice = invoice_100_paid_40_01(client, sim)
    seal_pending(runtime.connection, sim.id)
    with runtime.connection() as conn:
        assert verify_everything(conn, sim.id) == []
    # Behind the billing API's back: a superuser session that claims to be
    # billing posts 7.00 against the invoice with no billing event (the
    # triggers keep balances and the seal queue right, so only billing sees it).
    owner_conn.execute(sql.SQL("set role {}").format(sql.Identifier(APP_ROLE)))
    with owner_conn.transaction():
        post_entry(
            owner_conn,
            sim.id,
            build_entry(
                ISSUE,
                "settled by hand",
                [
                    Posting(BANK, Money.of("7.00", "USD")),
                    Posting(
                        AR,
                        Money.of("-7.00", "USD"),
                        invoice["customer"],
                        f"invoice:{invoice['id']}",
                    ),
                ],
            ),
        )
    shown = show(client, sim, invoice["id"])
    assert (shown["amount_paid"], shown["amount_due"]) == ("40.01", "52.99")
    with runtime.connection() as conn:
        problems = verify_invoices(conn, sim.id)
    assert [(p.check, p.subject) for p in problems] == [
        ("invoice_settlement", f"invoice {invoice['number']}")
    ]
    assert "paid 40.01 + credited 0.00 + written off 0.00 + due 52.99 = 93.00 USD" in (
        problems[0].detail
    )
    assert "total is 100.00" in problems[0].detail

    done = run_cli(database_url, "verify", "--book", str(sim.id), "--format", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert [(d["check"], d["subject"]) for d in report["discrepancies"]] == [
        ("invoice_settlement", f"invoice {invoice['number']}")
    ]
    assert Decimal(shown["total"]) == Decimal("100.00")
