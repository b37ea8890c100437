"""Customers (upsert by external id, balances and statement from the ledger),
products and prices through the HTTP API, and the billing CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.cli import main
from adapters.runtime import Runtime
from billing.postgres.posting import post_entry
from billing.postings import Allocation, payment_entry
from ledger.money import Money
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_http_invoices import billing_counts, draft, finalize, line
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

ISSUE = date(2026, 1, 10)


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", ISSUE)


def rejected(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    path: str,
    body: Any,
    status: int,
    code: str | None = None,
) -> dict[str, Any]:
    with runtime.connection() as conn:
        before = billing_counts(conn, book.id)
        customers_before = conn.execute(
            "select name, currency, external_id from customers where book_id = %s order by id",
            (book.id,),
        ).fetchall()
    problem = assert_problem(
        client.post(path, json=body, headers=auth(book.admin_key)), status, code
    )
    with runtime.connection() as conn:
        assert billing_counts(conn, book.id) == before
        customers_after = conn.execute(
            "select name, currency, external_id from customers where book_id = %s order by id",
            (book.id,),
        ).fetchall()
    assert customers_after == customers_before
    return problem


def pay(
    runtime: Runtime, book: BookFixture, customer: str, on: date, amount: str, **alloc: str
) -> None:
    """A bank transfer posted straight to the ledger (the payments API is elsewhere)."""
    entry = payment_entry(
        uuid.uuid4(),
        customer,
        on,
        Money.of(amount, "USD"),
        "Assets:Bank:Operating",
        [Allocation(invoice, Money.of(value, "USD")) for invoice, value in alloc.items()],
    )
    with unit_of_work(runtime.connection) as uow:
        post_entry(uow.conn, book.id, entry)
        uow.commit()


# --- customers ------------------------------------------------------------------------


def test_customer_upsert_by_external_id(client: Any, runtime: Runtime, sim: BookFixture) -> None:
    headers = auth(sim.admin_key)
    body = {
        "name": "Acme",
        "currency": "USD",
        "email": "billing@acme.test",
        "external_id": "crm-42",
        "tax_rate": "0.10",
        "address": {"line1": "1 Road", "city": "Town"},
        "metadata": {"segment": "smb"},
    }
    created = client.post("/v1/customers", json=body, headers=headers)
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["payment_terms"] == "net" and customer["payment_terms_days"] == 30
    assert (customer["tax_rate"], customer["tax_treatment"]) == ("0.10", "taxable")
    assert (customer["credit_balance"], customer["balance_due"]) == ("0.00", "0.00")
    updated = client.post(
        "/v1/customers",
        json={
            **body,
            "name": "Acme Inc",
            "payment_terms": "end_of_month",
            "payment_terms_days": 15,
        },
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == customer["id"]
    assert (updated.json()["name"], updated.json()["payment_terms"]) == ("Acme Inc", "end_of_month")
    for ref in (customer["id"], "crm-42"):
        got = client.get(f"/v1/customers/{ref}", headers=headers)
        assert got.status_code == 200 and got.json()["name"] == "Acme Inc"
    with runtime.connection() as conn:
        assert billing_counts(conn, sim.id)["customers"] == 1
    # End of month + 15: an invoice on Jan 10 is due Feb 15.
    invoice = finalize(client, sim, draft(client, sim, "crm-42", line("Work", "1", "10.00"))["id"])
    assert invoice["due_date"] == "2026-02-15"


def test_upsert_without_tax_rate_keeps_0_10_and_null_clears_it(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    """A CRM sync sends only the fields it owns: the upsert is a merge."""
    headers = auth(sim.admin_key)
    first = {
        "name": "Merge Co",
        "currency": "USD",
        "external_id": "crm-merge",
        "email": "ap@merge.test",
        "tax_rate": "0.10",
        "payment_terms_days": 45,
        "metadata": {"tier": "gold"},
    }
    assert client.post("/v1/customers", json=first, headers=headers).status_code == 201
    again = client.post(
        "/v1/customers",
        json={"name": "Merge Co Ltd", "currency": "USD", "external_id": "crm-merge"},
        headers=headers,
    )
    assert again.status_code == 200, again.text
    kept = again.json()
    assert (kept["name"], kept["tax_rate"], kept["payment_terms_days"]) == (
        "Merge Co Ltd",
        "0.10",
        45,
    )
    assert (kept["email"], kept["metadata"]) == ("ap@merge.test", {"tier": "gold"})
    # null clears: a nullable field becomes null, tax_rate and terms their defaults.
    nulls = {"email": None, "tax_rate": None, "payment_terms_days": None, "metadata": None}
    cleared = client.post(
        "/v1/customers",
        json={"name": "Merge Co Ltd", "currency": "USD", "external_id": "crm-merge", **nulls},
        headers=headers,
    ).json()
    assert (cleared["email"], cleared["tax_rate"], cleared["payment_terms_days"]) == (
        None,
        "0.00",
        30,
    )
    assert cleared["metadata"] == {}
    # The update route merges the same way.
    by_id = f"/v1/customers/{kept['id']}"
    assert client.post(by_id, json={"tax_rate": "0.2"}, headers=headers).json()["tax_rate"] == (
        "0.20"
    )
    same = client.post(by_id, json={"email": "new@merge.test"}, headers=headers).json()
    assert (same["tax_rate"], same["email"]) == ("0.20", "new@merge.test")
    gone = client.post(by_id, json={"tax_rate": None, "email": None}, headers=headers).json()
    assert (gone["tax_rate"], gone["email"]) == ("0.00", None)
    # A new customer with null fields gets the defaults.
    fresh = client.post(
        "/v1/customers",
        json={"name": "Fresh", "currency": "USD", "tax_rate": None, "payment_terms": None},
        headers=headers,
    )
    assert fresh.status_code == 201, fresh.text
    assert (fresh.json()["tax_rate"], fresh.json()["payment_terms"]) == ("0.00", "net")
    rejected(client, runtime, sim, by_id, {"name": None}, 400, "validation_error")


def test_bad_customer_requests_write_nothing(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    headers = auth(sim.admin_key)
    a = client.post(
        "/v1/customers",
        json={"name": "A", "currency": "USD", "external_id": "crm-a"},
        headers=headers,
    ).json()
    b = client.post(
        "/v1/customers",
        json={"name": "B", "currency": "USD", "external_id": "crm-b"},
        headers=headers,
    ).json()
    base = {"name": "A2", "currency": "USD"}
    change = rejected(
        client,
        runtime,
        sim,
        "/v1/customers",
        {**base, "currency": "EUR", "external_id": "crm-a"},
        422,
        "invalid_request",
    )
    assert "currency cannot change" in change["detail"]
    reuse = rejected(
        client, runtime, sim, f"/v1/customers/{b['id']}", {"external_id": "crm-a"}, 409, "conflict"
    )
    assert a["id"] in reuse["detail"]
    rejected(client, runtime, sim, f"/v1/customers/{a['id']}", {"currency": "EUR"}, 422)
    number = rejected(
        client, runtime, sim, "/v1/customers", {**base, "tax_rate": 0.1}, 400, "validation_error"
    )
    assert "decimal strings" in number["detail"]
    rejected(client, runtime, sim, "/v1/customers", {**base, "tax_rate": "1.5"}, 422)
    rejected(client, runtime, sim, "/v1/customers", {**base, "tax_rate": "ten"}, 422)
    rejected(client, runtime, sim, "/v1/customers", {**base, "payment_terms": "net60"}, 422)
    rejected(client, runtime, sim, "/v1/customers", {**base, "tax_treatment": "zero"}, 422)
    rejected(client, runtime, sim, "/v1/customers", {**base, "payment_terms_days": -1}, 422)
    rejected(client, runtime, sim, "/v1/customers", {**base, "currency": "XYZ"}, 422)
    rejected(client, runtime, sim, "/v1/customers", {"name": " ", "currency": "USD"}, 422)
    rejected(client, runtime, sim, "/v1/customers", {"currency": "USD"}, 400)
    assert_problem(client.get("/v1/customers/crm-nobody", headers=headers), 404, "not_found")
    # A legitimate update through the same endpoint does work.
    ok = client.post(
        f"/v1/customers/{b['id']}",
        json={"external_id": "crm-b2", "tax_rate": "0.2"},
        headers=headers,
    )
    assert ok.status_code == 200, ok.text
    assert (ok.json()["external_id"], ok.json()["tax_rate"]) == ("crm-b2", "0.20")


def test_customer_balances_and_list(client: Any, runtime: Runtime, sim: BookFixture) -> None:
    headers = auth(sim.admin_key)
    ids = [
        client.post(
            "/v1/customers", json={"name": f"C{i}", "currency": "USD"}, headers=headers
        ).json()["id"]
        for i in range(5)
    ]
    invoice = finalize(client, sim, draft(client, sim, ids[0], line("Work", "1", "108.00"))["id"])
    got = client.get(f"/v1/customers/{ids[0]}", headers=headers).json()
    assert (got["balance_due"], got["credit_balance"]) == ("108.00", "0.00")
    pay(runtime, sim, ids[0], ISSUE, "150.00", **{invoice["id"]: "108.00"})
    got = client.get(f"/v1/customers/{ids[0]}", headers=headers).json()
    assert (got["balance_due"], got["credit_balance"]) == ("0.00", "42.00")
    shown = client.get(f"/v1/invoices/{invoice['id']}", headers=headers).json()
    assert (shown["status"], shown["amount_paid"], shown["amount_due"]) == (
        "paid",
        "108.00",
        "0.00",
    )

    seen: list[str] = []
    cursor = ""
    while True:
        page = client.get(f"/v1/customers?limit=2{cursor}", headers=headers).json()
        seen += [c["id"] for c in page["data"]]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted(ids)
    assert_problem(client.get("/v1/customers?cursor=%%%", headers=headers), 400)


def test_customer_statement_from_receivable_and_credit_postings(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    headers = auth(sim.admin_key)
    cid = client.post(
        "/v1/customers", json={"name": "Stated", "currency": "USD"}, headers=headers
    ).json()["id"]
    a = finalize(client, sim, draft(client, sim, cid, line("January", "1", "108.00"))["id"])
    assert client.post("/v1/clock", json={"now": "2026-02-05"}, headers=headers).status_code == 200
    b = finalize(client, sim, draft(client, sim, cid, line("February", "1", "50.00"))["id"])
    pay(runtime, sim, cid, date(2026, 2, 10), "150.00", **{a["id"]: "108.00"})  # 42 to credit
    assert client.post("/v1/clock", json={"now": "2026-02-20"}, headers=headers).status_code == 200
    c = finalize(client, sim, draft(client, sim, cid, line("Extra", "1", "30.00"))["id"])
    assert (c["amount_paid"], c["amount_due"]) == ("30.00", "0.00")  # paid from the credit

    r = client.get(f"/v1/customers/{cid}/statement?from=2026-02-01&to=2026-02-28", headers=headers)
    assert r.status_code == 200, r.text
    statement = r.json()
    assert statement["opening_balance"] == "108.00"
    assert [
        (x["date"], x["kind"], x["reference"], x["amount"], x["balance"])
        for x in statement["lines"]
    ] == [
        ("2026-02-05", "invoice", b["number"], "50.00", "158.00"),
        ("2026-02-10", "payment", None, "-150.00", "8.00"),
        ("2026-02-20", "invoice", c["number"], "30.00", "38.00"),
    ]
    assert statement["closing_balance"] == "38.00"
    assert statement["lines"][1]["invoices"] == [a["number"]]  # what the payment settled
    assert statement["lines"][1]["document"].startswith("payment:")
    customer = client.get(f"/v1/customers/{cid}", headers=headers).json()
    # Closing balance = owed on invoices − credit held, both read from the ledger.
    assert (customer["balance_due"], customer["credit_balance"]) == ("50.00", "12.00")
    january = client.get(
        f"/v1/customers/{cid}/statement?from=2026-01-01&to=2026-01-31", headers=headers
    ).json()
    assert (january["opening_balance"], january["closing_balance"]) == ("0.00", "108.00")
    assert [x["reference"] for x in january["lines"]] == [a["number"]]
    assert_problem(
        client.get(f"/v1/customers/{cid}/statement?from=2026-02-01&to=2026-01-01", headers=headers),
        422,
    )
    assert_problem(
        client.get(f"/v1/customers/{cid}/statement?from=2026-02-31", headers=headers), 400
    )


# --- products and prices --------------------------------------------------------------


def test_products_and_prices(client: Any, runtime: Runtime, sim: BookFixture) -> None:
    headers = auth(sim.admin_key)
    product = client.post(
        "/v1/products",
        json={"name": "Seats", "revenue_account": "Income:Subscriptions"},
        headers=headers,
    )
    assert product.status_code == 201, product.text
    pid = product.json()["id"]
    assert client.get(f"/v1/products/{pid}", headers=headers).json()["name"] == "Seats"
    assert [p["id"] for p in client.get("/v1/products", headers=headers).json()["data"]] == [pid]

    monthly = client.post(
        "/v1/prices",
        json={
            "product": pid,
            "currency": "USD",
            "charge_model": "per_unit",
            "unit_amount": "12.000000000001",
            "interval": "month",
        },
        headers=headers,
    )
    assert monthly.status_code == 201, monthly.text
    price = monthly.json()
    assert (price["unit_amount"], price["interval"], price["interval_count"]) == (
        "12.000000000001",
        "month",
        1,
    )
    assert client.get(f"/v1/prices/{price['id']}", headers=headers).json() == price
    tiers = client.post(
        "/v1/prices",
        json={
            "product": pid,
            "currency": "USD",
            "charge_model": "graduated",
            "tiers": [
                {"up_to": 1000, "unit_amount": "0.10"},
                {"up_to": 10000, "unit_amount": "0.05"},
                {"up_to": None, "unit_amount": "0.01"},
            ],
            "metric": "api_calls",
            "aggregation": "sum",
        },
        headers=headers,
    )
    assert tiers.status_code == 201, tiers.text
    assert tiers.json()["tiers"][1] == {"up_to": 10000, "unit_amount": "0.05", "flat_amount": "0"}
    assert tiers.json()["recurring"] is False

    # A per-customer override, named by external id, in the customer's currency.
    eur = client.post(
        "/v1/customers",
        json={"name": "Euro", "currency": "EUR", "external_id": "crm-eur"},
        headers=headers,
    ).json()
    base = client.post(
        "/v1/prices",
        json={
            "product": pid,
            "currency": "EUR",
            "charge_model": "per_unit",
            "unit_amount": "10.00",
        },
        headers=headers,
    ).json()
    override = client.post(
        "/v1/prices",
        json={
            "product": pid,
            "currency": "EUR",
            "charge_model": "per_unit",
            "unit_amount": "8.50",
            "customer": "crm-eur",
            "overrides_price": base["id"],
        },
        headers=headers,
    )
    assert override.status_code == 201, override.text
    assert override.json()["customer"] == eur["id"]
    invoice = finalize(
        client, sim, draft(client, sim, eur["id"], {"price": base["id"], "quantity": "3"})["id"]
    )
    assert [
        (x["description"], x["unit_amount"], x["amount"], x["revenue_account"])
        for x in invoice["lines"]
    ] == [("Seats", "8.50", "25.50", "Income:Subscriptions")]
    entries = client.get(
        f"/v1/journal-entries?document=invoice:{invoice['id']}", headers=headers
    ).json()["data"]
    assert {(p["account"], p["amount"], p["currency"]) for p in entries[0]["postings"]} == {
        ("Assets:Receivable:Trade", "25.50", "EUR"),
        ("Income:Subscriptions", "-25.50", "EUR"),
    }

    def bad(body: dict[str, Any], status: int, code: str | None = None) -> dict[str, Any]:
        return rejected(client, runtime, sim, "/v1/prices", body, status, code)

    usd = {"product": pid, "currency": "USD", "charge_model": "per_unit", "unit_amount": "1.00"}
    mismatch = bad({**usd, "customer": "crm-eur", "overrides_price": base["id"]}, 422)
    assert "EUR" in mismatch["detail"] and "USD" in mismatch["detail"]
    bad({**usd, "product": str(uuid.uuid4())}, 404)
    bad({**usd, "customer": "crm-nobody"}, 404)
    bad({**usd, "overrides_price": str(uuid.uuid4())}, 404)
    bad({**usd, "charge_model": "magic"}, 422)
    bad({**usd, "unit_amount": 1}, 400, "validation_error")
    bad({**usd, "unit_amount": "0.0000000000001"}, 422, "invalid_amount")
    bad({**usd, "interval": "fortnight"}, 422)
    bad({**usd, "charge_model": "graduated", "unit_amount": None}, 422)
    bad({**usd, "metric": "calls"}, 422)
    rejected(client, runtime, sim, "/v1/products", {"name": ""}, 422)
    rejected(
        client, runtime, sim, "/v1/products", {"name": "X", "revenue_account": "Assets:Bank"}, 422
    )
    assert_problem(client.get(f"/v1/prices/{uuid.uuid4()}", headers=headers), 404)
    assert_problem(client.get("/v1/products/nope", headers=headers), 404)


def test_billing_writes_need_the_billing_role(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    from adapters.keys import Role
    from tests.integration.http_fixtures import new_key

    auditor = new_key(runtime, sim.id, Role.AUDITOR)
    operator = new_key(runtime, sim.id, Role.OPERATOR)
    body = {"name": "Role test", "currency": "USD"}
    assert_problem(client.post("/v1/customers", json=body, headers=auth(auditor)), 403, "forbidden")
    assert client.post("/v1/customers", json=body, headers=auth(operator)).status_code == 201
    assert client.get("/v1/customers", headers=auth(auditor)).status_code == 200


# --- CLI ------------------------------------------------------------------------------


def test_cli_customers_and_invoices(
    runtime: Runtime,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    book = make_book(runtime, "USD", ISSUE)
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*args: str) -> Any:
        code = main([*args, "--book", str(book.id), "--format", "json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    customer = run(
        "customers", "create", "--name", "CLI Co", "--currency", "USD",
        "--external-id", "cli-1", "--tax-rate", "0.10",
    )  # fmt: skip
    assert (customer["created"], customer["tax_rate"]) == (True, "0.10")
    again = run(
        "customers", "create", "--name", "CLI Co 2", "--currency", "USD", "--external-id", "cli-1"
    )
    assert (again["created"], again["id"]) == (False, customer["id"])
    invoice = run(
        "invoices", "create", "--customer", "cli-1",
        "--line", "Consulting", "2", "50.00",
        "--line", "March plan", "1", "8.00", "2026-03-01", "2026-04-01",
    )  # fmt: skip
    assert (invoice["status"], invoice["tax_total"], invoice["total"]) == (
        "draft",
        "10.80",
        "118.80",
    )  # the second create left --tax-rate out: 0.10 kept (a merge)
    final = run("invoices", "finalize", invoice["id"])
    assert (final["number"], final["total"], final["amount_due"]) == (
        "INV-2026-000001",
        "118.80",
        "118.80",
    )
    assert run("invoices", "show", invoice["id"]) == final
    voided = run("invoices", "void", invoice["id"])
    assert (voided["status"], voided["number"]) == ("void", "INV-2026-000001")
    with runtime.connection() as conn:
        assert billing_counts(conn, book.id)["journal_entries"] == 2  # finalization and reversal
    code = main(["invoices", "finalize", invoice["id"], "--book", str(book.id)])
    assert code == 2 and "already finalized" in capsys.readouterr().err
    code = main(
        ["invoices", "create", "--customer", "cli-1", "--line", "x", "1", "--book", str(book.id)]
    )
    assert code == 2 and "--line takes" in capsys.readouterr().err


def test_statement_counts_nothing_from_other_customers(
    client: Any, runtime: Runtime, sim: BookFixture, app_conn: psycopg.Connection
) -> None:
    headers = auth(sim.admin_key)
    one, two = (
        client.post("/v1/customers", json={"name": n, "currency": "USD"}, headers=headers).json()[
            "id"
        ]
        for n in ("One", "Two")
    )
    finalize(client, sim, draft(client, sim, one, line("Work", "1", "10.00"))["id"])
    finalize(client, sim, draft(client, sim, two, line("Work", "1", "99.00"))["id"])
    statement = client.get(
        f"/v1/customers/{one}/statement?from=2026-01-01&to=2026-01-31", headers=headers
    ).json()
    assert statement["closing_balance"] == "10.00"
    assert Decimal(statement["closing_balance"]) == sum(
        Decimal(x["amount"]) for x in statement["lines"]
    )
