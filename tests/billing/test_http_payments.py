"""HTTP: payments, refunds, credit notes, apply-credit and mark-uncollectible,
with exact postings, idempotent retries, and bad input that writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import entry_lines, new_customer, new_invoice, row_counts
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, new_key, open_client

D = Decimal


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 2, 1))


def _setup(runtime: Runtime, book: BookFixture) -> tuple[str, str]:
    """A customer (8 % tax) with an invoice of 100.00 + 8.00 issued Jan 10."""
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0.08")
        invoice = new_invoice(
            uow.conn, book.id, customer, date(2026, 1, 10), [("100.00", None, None)]
        )
        uow.commit()
    return str(customer.id), str(invoice.id)


def test_payment_overpayment_refund_and_reads(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    customer, invoice = _setup(runtime, sim_book)
    headers = {**auth(sim_book.admin_key), "Idempotency-Key": "pay-1"}
    body = {
        "customer": customer,
        "amount": "150.00",
        "currency": "USD",
        "method": "bank_transfer",
        "invoice": invoice,
        "reference": "TRX-9",
    }
    created = client.post("/v1/payments", json=body, headers=headers)
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["received_on"] == "2026-02-01"  # the book's (simulated) today
    assert payment["allocations"] == [
        {"invoice": invoice, "number": "INV-2026-000001", "amount": "108.00"}
    ]
    assert (payment["amount"], payment["unapplied"], payment["refunded"]) == (
        "150.00",
        "42.00",
        "0.00",
    )
    replay = client.post("/v1/payments", json=body, headers=headers)
    assert replay.status_code == 201 and replay.json() == payment
    assert replay.headers.get("idempotent-replayed") == "true"
    with runtime.connection() as conn:
        assert entry_lines(conn, sim_book.id, payment["entry"]) == [
            ("Assets:Bank:Operating", "150.00"),
            ("Assets:Receivable:Trade", "-108.00"),
            ("Liabilities:Customer-Credit", "-42.00"),
        ]
        assert row_counts(conn, sim_book.id)[2] == 1  # one payment despite the retry
    got = client.get(f"/v1/payments/{payment['id']}", headers=auth(sim_book.admin_key))
    assert got.status_code == 200 and got.json() == payment
    listed = client.get(f"/v1/payments?customer={customer}", headers=auth(sim_book.admin_key))
    assert [p["id"] for p in listed.json()["data"]] == [payment["id"]]
    inv = client.get(f"/v1/invoices/{invoice}", headers=auth(sim_book.admin_key)).json()
    assert (inv["status"], inv["amount_paid"], inv["amount_due"]) == ("paid", "108.00", "0.00")

    too_much = client.post(
        "/v1/refunds",
        json={"payment": payment["id"], "amount": "150.01"},
        headers=auth(sim_book.admin_key),
    )
    assert_problem(too_much, 422, "exceeds_available")
    refund = client.post(
        "/v1/refunds",
        json={"payment": payment["id"], "amount": "50.00", "reason": "goodwill"},
        headers=auth(sim_book.admin_key),
    )
    assert refund.status_code == 201, refund.text
    r = refund.json()
    assert (r["amount"], r["payment"], r["refunded_on"]) == ("50.00", payment["id"], "2026-02-01")
    with runtime.connection() as conn:
        assert entry_lines(conn, sim_book.id, r["entry"]) == [
            ("Assets:Bank:Operating", "-50.00"),
            ("Income:Contra:Refunds", "7.41"),
            ("Liabilities:Customer-Credit", "42.00"),
            ("Liabilities:Tax-Payable", "0.59"),
        ]
    again = client.get(f"/v1/refunds/{r['id']}", headers=auth(sim_book.admin_key))
    assert again.status_code == 200 and again.json() == r
    paid = client.get(f"/v1/payments/{payment['id']}", headers=auth(sim_book.admin_key)).json()
    assert paid["refunded"] == "50.00"


def test_credit_note_apply_credit_and_write_off(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    customer, invoice = _setup(runtime, sim_book)
    key = auth(sim_book.admin_key)
    note = client.post(
        "/v1/credit-notes",
        json={"invoice": invoice, "lines": [{"line_no": 1, "amount": "25.00"}], "reason": "late"},
        headers=key,
    )
    assert note.status_code == 201, note.text
    n = note.json()
    assert (n["number"], n["net_amount"], n["tax_amount"], n["total"], n["credit_to"]) == (
        "CN-2026-000001",
        "25.00",
        "2.00",
        "27.00",
        "receivable",
    )
    with runtime.connection() as conn:
        assert entry_lines(conn, sim_book.id, n["entry"]) == [
            ("Assets:Receivable:Trade", "-27.00"),
            ("Income:Contra:Credit-Notes", "25.00"),
            ("Liabilities:Tax-Payable", "2.00"),
        ]
    assert client.get(f"/v1/credit-notes/{n['number']}", headers=key).json() == n
    assert [
        x["id"]
        for x in client.get(f"/v1/credit-notes?invoice={invoice}", headers=key).json()["data"]
    ] == [n["id"]]
    receipt = client.post(
        "/v1/payments",
        json={
            "customer": customer,
            "amount": "30.00",
            "currency": "USD",
            "method": "cash",
            "allocations": None,
        },
        headers=key,
    )
    assert receipt.status_code == 201, receipt.text
    # With no invoice named, the oldest open invoice is paid.
    assert receipt.json()["allocations"][0]["amount"] == "30.00"
    customer2, invoice2 = _setup(runtime, sim_book)
    partial = client.post(
        "/v1/payments",
        json={
            "customer": customer2,
            "amount": "20.00",
            "currency": "USD",
            "method": "check",
            "invoice": invoice2,
        },
        headers=key,
    )
    assert partial.status_code == 201, partial.text
    kept = client.post(
        "/v1/credit-notes",
        json={"invoice": invoice2, "amount": "10.80", "credit_to": "customer_credit"},
        headers=key,
    )
    assert kept.status_code == 201, kept.text
    assert kept.json()["number"] == "CN-2026-000002"
    # 108.00 - 20.00 paid = 88.00 due; the 10.80 kept as credit is applied in part.
    applied = client.post(
        f"/v1/invoices/{invoice2}/apply-credit", json={"amount": "5.00"}, headers=key
    )
    assert applied.status_code == 200, applied.text
    assert (applied.json()["applied"], applied.json()["amount_due"]) == ("5.00", "83.00")
    written = client.post(f"/v1/invoices/{invoice2}/mark-uncollectible", headers=key)
    assert written.status_code == 200, written.text
    w = written.json()
    assert (w["status"], w["amount_due"], w["amount_written_off"]) == (
        "uncollectible",
        "0.00",
        "83.00",
    )
    assert_problem(
        client.post(f"/v1/invoices/{invoice2}/mark-uncollectible", headers=key),
        409,
        "invalid_state",
    )


def test_bad_input_is_4xx_and_writes_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    customer, invoice = _setup(runtime, sim_book)
    key = auth(sim_book.admin_key)
    pay = {"customer": customer, "amount": "10.00", "currency": "USD", "method": "card"}
    with runtime.connection() as conn:
        before = row_counts(conn, sim_book.id)
    cases: list[tuple[str, dict[str, Any], int, str | None]] = [
        ("/v1/payments", {**pay, "amount": 10.0}, 400, None),
        ("/v1/payments", {**pay, "amount": 10}, 400, None),
        ("/v1/payments", {**pay, "amount": "0"}, 422, None),
        ("/v1/payments", {**pay, "amount": "-1.00"}, 422, None),
        ("/v1/payments", {**pay, "amount": "1.001"}, 422, "amount_too_precise"),
        # a customer may pay in several currencies, but each invoice only in its own
        ("/v1/payments", {**pay, "currency": "EUR", "invoice": invoice}, 422, "currency_mismatch"),
        ("/v1/payments", {**pay, "method": "bitcoin"}, 422, "invalid_request"),
        ("/v1/payments", {**pay, "customer": "nobody"}, 404, "not_found"),
        ("/v1/payments", {**pay, "invoice": "nope"}, 404, "not_found"),
        ("/v1/payments", {**pay, "surprise": 1}, 400, None),
        (
            "/v1/payments",
            {**pay, "allocations": [{"invoice": invoice, "amount": "108.01"}], "amount": "200.00"},
            422,
            "exceeds_available",
        ),
        (
            "/v1/payments",
            {**pay, "allocations": [{"invoice": invoice, "amount": "20.00"}]},
            422,
            "exceeds_available",
        ),
        ("/v1/refunds", {"customer": customer, "amount": "0.01"}, 422, "exceeds_available"),
        (
            "/v1/refunds",
            {"payment": "00000000-0000-0000-0000-000000000000", "amount": "1.00"},
            404,
            "not_found",
        ),
        ("/v1/refunds", {"amount": "1.00"}, 422, "invalid_request"),
        ("/v1/refunds", {"customer": customer, "amount": 1.5}, 400, None),
        ("/v1/credit-notes", {"invoice": invoice, "amount": "108.01"}, 422, "exceeds_available"),
        ("/v1/credit-notes", {"invoice": invoice, "amount": 5}, 400, None),
        ("/v1/credit-notes", {"invoice": invoice, "amount": "1.00", "credit_to": "x"}, 422, None),
        ("/v1/credit-notes", {"invoice": invoice, "amount": "-1.00"}, 422, None),
        ("/v1/credit-notes", {"invoice": "nope", "amount": "1.00"}, 404, "not_found"),
        (
            "/v1/credit-notes",
            {"invoice": invoice, "lines": [{"line_no": 9, "amount": "1.00"}]},
            422,
            None,
        ),
        (f"/v1/invoices/{invoice}/apply-credit", {"amount": "-1.00"}, 422, None),
    ]
    for path, body, status, code in cases:
        assert_problem(client.post(path, json=body, headers=key), status, code)
    # A read-only key may not write.
    auditor = new_key(runtime, sim_book.id, Role.AUDITOR)
    assert_problem(client.post("/v1/payments", json=pay, headers=auth(auditor)), 403, "forbidden")
    with runtime.connection() as conn:
        assert row_counts(conn, sim_book.id) == before


@pytest.mark.slow
def test_cli_payments_refunds_and_credit_notes(
    runtime: Runtime, sim_book: BookFixture, database_url: str
) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).with_name("activebilling")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVEBILLING_")}
    env["DATABASE_URL"] = database_url
    customer, invoice = _setup(runtime, sim_book)
    book = ["--book", str(sim_book.id), "--format", "json"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), *args, *book], env=env, capture_output=True, text=True, timeout=120
        )

    note = run("credit-notes", "create", "--invoice", invoice, "--line", "1:10.00")
    assert note.returncode == 0, note.stderr
    assert json.loads(note.stdout)["total"] == "10.80"
    paid = run(
        "payments",
        "create",
        "--customer",
        customer,
        "--amount",
        "100.00",
        "--currency",
        "USD",
        "--method",
        "check",
        "--invoice",
        invoice,
    )
    assert paid.returncode == 0, paid.stderr
    payment = json.loads(paid.stdout)
    assert (payment["allocations"][0]["amount"], payment["unapplied"]) == ("97.20", "2.80")
    with runtime.connection() as conn:
        before = row_counts(conn, sim_book.id)
    too_much = run("refunds", "create", "--payment", payment["id"], "--amount", "100.01")
    assert too_much.returncode == 2 and "more than" in too_much.stderr
    with runtime.connection() as conn:
        assert row_counts(conn, sim_book.id) == before
    refund = run("refunds", "create", "--customer", customer, "--amount", "2.80")
    assert refund.returncode == 0, refund.stderr
    assert json.loads(refund.stdout)["payment"] is None
