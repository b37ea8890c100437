"""One-off invoices through the HTTP API: worked examples with exact debits and
credits, the document, and bad input that writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from adapters.runtime import Runtime
from billing.postgres.posting import post_entry
from billing.postings import Allocation, payment_entry
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

ISSUE = date(2026, 1, 10)


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    """A book whose clock stands on 2026-01-10."""
    return make_book(runtime, "USD", ISSUE)


def customer(client: Any, book: BookFixture, currency: str = "USD", **extra: Any) -> str:
    r = client.post(
        "/v1/customers",
        json={"name": f"Customer {currency}", "currency": currency, **extra},
        headers=auth(book.admin_key),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def line(description: str, quantity: str, unit_amount: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "quantity": quantity, "unit_amount": unit_amount, **extra}


def draft(client: Any, book: BookFixture, customer_id: str, *lines: dict[str, Any]) -> Any:
    r = client.post(
        "/v1/invoices",
        json={"customer": customer_id, "lines": list(lines)},
        headers=auth(book.admin_key),
    )
    assert r.status_code == 201, r.text
    return r.json()


def finalize(client: Any, book: BookFixture, invoice_id: str) -> Any:
    r = client.post(f"/v1/invoices/{invoice_id}/finalize", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    return r.json()


def trial_balance(client: Any, book: BookFixture) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """(account, currency) → (debit, credit), from the ledger's trial balance."""
    r = client.get("/v1/reports/trial-balance?as_of=2026-12-31", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    return {
        (x["account"], x["currency"]): (Decimal(x["debit"]), Decimal(x["credit"]))
        for x in r.json()["lines"]
    }


def billing_counts(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, int]:
    tables = (
        "customers",
        "products",
        "prices",
        "invoices",
        "invoice_lines",
        "number_series",
        "journal_entries",
        "postings",
        "idempotency_keys",
    )
    row = conn.execute(
        "select " + ", ".join(f"(select count(*) from {t} where book_id = %(b)s)" for t in tables),
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return dict(zip(tables, (int(v) for v in row), strict=True))


D = Decimal


# --- worked examples ------------------------------------------------------------------


def test_usd_invoice_with_10_percent_tax(client: Any, sim: BookFixture) -> None:
    cid = customer(client, sim, tax_rate="0.10")
    body = draft(
        client,
        sim,
        cid,
        line("Consulting", "2", "50.00"),
        line("Setup", "1", "8.00"),
    )
    assert body["status"] == "draft" and body["number"] is None
    # A draft shows what finalizing it now would compute, and owes nothing yet.
    assert (body["subtotal"], body["tax_total"], body["total"], body["amount_due"]) == (
        "108.00",
        "10.80",
        "118.80",
        "0.00",
    )
    assert trial_balance(client, sim) == {}

    invoice = finalize(client, sim, body["id"])
    assert invoice["number"] == "INV-2026-000001"
    assert invoice["status"] == "open"
    assert invoice["issue_date"] == "2026-01-10"
    assert invoice["due_date"] == "2026-02-09"  # net 30 by default
    assert (invoice["total"], invoice["amount_paid"], invoice["amount_due"]) == (
        "118.80",
        "0.00",
        "118.80",
    )
    assert [(x["amount"], x["tax_rate"], x["tax_amount"]) for x in invoice["lines"]] == [
        ("100.00", "0.10", "10.00"),
        ("8.00", "0.10", "0.80"),
    ]
    assert trial_balance(client, sim) == {
        ("Assets:Receivable:Trade", "USD"): (D("118.80"), D(0)),
        ("Income:Services", "USD"): (D(0), D("108.00")),
        ("Liabilities:Tax-Payable", "USD"): (D(0), D("10.80")),
    }
    got = client.get(f"/v1/invoices/{body['id']}", headers=auth(sim.admin_key)).json()
    assert got == invoice


def test_jpy_and_kwd_lines_round_to_the_minor_unit(client: Any, sim: BookFixture) -> None:
    jpy = customer(client, sim, "JPY", tax_rate="0.10")
    kwd = customer(client, sim, "KWD", tax_rate="0.10")
    yen = finalize(
        client,
        sim,
        draft(
            client,
            sim,
            jpy,
            line("Licences", "3", "333.333333333333"),  # 999.999999999999 → 1000
            line("Stamp", "1", "0.5"),  # half up → 1
        )["id"],
    )
    assert [(x["amount"], x["tax_amount"]) for x in yen["lines"]] == [("1000", "100"), ("1", "0")]
    assert (yen["subtotal"], yen["tax_total"], yen["total"]) == ("1001", "100", "1101")
    dinar = finalize(
        client,
        sim,
        draft(
            client,
            sim,
            kwd,
            line("Hosting", "7", "0.214285714286"),  # 1.500000000002 → 1.500
            line("Fee", "1", "0.0125"),  # half up → 0.013, tax 0.0013 → 0.001
        )["id"],
    )
    assert [(x["amount"], x["tax_amount"]) for x in dinar["lines"]] == [
        ("1.500", "0.150"),
        ("0.013", "0.001"),
    ]
    assert (dinar["subtotal"], dinar["tax_total"], dinar["total"]) == ("1.513", "0.151", "1.664")
    assert (yen["number"], dinar["number"]) == ("INV-2026-000001", "INV-2026-000002")
    assert trial_balance(client, sim) == {
        ("Assets:Receivable:Trade", "JPY"): (D(1101), D(0)),
        ("Assets:Receivable:Trade", "KWD"): (D("1.664"), D(0)),
        ("Income:Services", "JPY"): (D(0), D(1001)),
        ("Income:Services", "KWD"): (D(0), D("1.513")),
        ("Liabilities:Tax-Payable", "JPY"): (D(0), D(100)),
        ("Liabilities:Tax-Payable", "KWD"): (D(0), D("0.151")),
    }


def test_zero_invoice_is_a_numbered_document_that_posts_nothing(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    cid = customer(client, sim, tax_rate="0.10")
    zero = finalize(client, sim, draft(client, sim, cid, line("Free trial", "1", "0.00"))["id"])
    assert zero["number"] == "INV-2026-000001"
    assert (zero["total"], zero["amount_due"]) == ("0.00", "0.00")
    assert zero["status"] == "paid"  # nothing is owed on it
    with runtime.connection() as conn:
        assert billing_counts(conn, sim.id)["journal_entries"] == 0
    assert trial_balance(client, sim) == {}
    after = finalize(client, sim, draft(client, sim, cid, line("Support", "1", "10.00"))["id"])
    assert after["number"] == "INV-2026-000002"


def test_future_service_is_deferred_and_past_service_is_income(
    client: Any, sim: BookFixture
) -> None:
    cid = customer(client, sim)
    invoice = finalize(
        client,
        sim,
        draft(
            client,
            sim,
            cid,
            line(
                "February plan", "1", "30.00", service_start="2026-02-01", service_end="2026-03-01"
            ),
            line(
                "December support",
                "1",
                "20.00",
                service_start="2025-12-01",
                service_end="2026-01-01",
            ),
        )["id"],
    )
    assert (invoice["supply_start"], invoice["supply_end"]) == ("2025-12-01", "2026-03-01")
    assert trial_balance(client, sim) == {
        ("Assets:Receivable:Trade", "USD"): (D("50.00"), D(0)),
        ("Income:Services", "USD"): (D(0), D("20.00")),
        ("Liabilities:Deferred-Revenue", "USD"): (D(0), D("30.00")),
    }
    entries = client.get(
        f"/v1/journal-entries?document=invoice:{invoice['id']}", headers=auth(sim.admin_key)
    ).json()["data"]
    assert len(entries) == 1
    postings = {
        (p["account"], p["amount"], p["dimensions"].get("line")) for p in entries[0]["postings"]
    }
    assert postings == {
        ("Assets:Receivable:Trade", "50.00", None),
        ("Liabilities:Deferred-Revenue", "-30.00", "1"),
        ("Income:Services", "-20.00", "2"),
    }
    assert {p["customer"] for p in entries[0]["postings"]} == {cid}


@pytest.mark.parametrize(
    ("tax_level", "tax"), [(None, "0.03"), ("per_invoice", "0.02")], ids=["per_line", "per_invoice"]
)
def test_tax_per_line_or_per_invoice_and_rate(
    client: Any, runtime: Runtime, owner_conn: psycopg.Connection, tax_level: str | None, tax: str
) -> None:
    book = make_book(runtime, "USD", ISSUE)
    if tax_level:
        owner_conn.execute(
            "update books set settings = %s where id = %s",
            (Jsonb({"tax_level": tax_level}), book.id),
        )
    cid = customer(client, book, tax_rate="0.10")
    three = [line(f"Item {i}", "1", "0.05") for i in range(3)]  # 0.005 tax each
    invoice = finalize(client, book, draft(client, book, cid, *three)["id"])
    assert (invoice["subtotal"], invoice["tax_total"]) == ("0.15", tax)
    assert sum(D(x["tax_amount"]) for x in invoice["lines"]) == D(tax)
    total = D("0.15") + D(tax)
    assert trial_balance(client, book) == {
        ("Assets:Receivable:Trade", "USD"): (total, D(0)),
        ("Income:Services", "USD"): (D(0), D("0.15")),
        ("Liabilities:Tax-Payable", "USD"): (D(0), D(tax)),
    }


def test_auto_finalize_void_and_delete(client: Any, sim: BookFixture) -> None:
    cid = customer(client, sim)
    r = client.post(
        "/v1/invoices",
        json={"customer": cid, "lines": [line("Audit", "1", "40.00")], "auto_finalize": True},
        headers=auth(sim.admin_key),
    )
    assert r.status_code == 201, r.text
    invoice = r.json()
    assert (invoice["number"], invoice["status"], invoice["amount_due"]) == (
        "INV-2026-000001",
        "open",
        "40.00",
    )
    voided = client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth(sim.admin_key))
    assert voided.status_code == 200, voided.text
    assert (voided.json()["status"], voided.json()["number"]) == ("void", "INV-2026-000001")
    assert voided.json()["amount_due"] == "0.00"
    assert trial_balance(client, sim) == {}  # the reversal undid the finalization entry
    again = client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth(sim.admin_key))
    assert_problem(again, 409, "invalid_state")

    doomed = draft(client, sim, cid, line("Typo", "1", "1.00"))
    gone = client.delete(f"/v1/invoices/{doomed['id']}", headers=auth(sim.admin_key))
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert_problem(client.get(f"/v1/invoices/{doomed['id']}", headers=auth(sim.admin_key)), 404)
    final = client.delete(f"/v1/invoices/{invoice['id']}", headers=auth(sim.admin_key))
    assert_problem(final, 409, "invalid_state")


def test_list_invoices_filters_and_pages(client: Any, sim: BookFixture) -> None:
    a = customer(client, sim, external_id="crm-a")
    b = customer(client, sim)
    open_a = finalize(client, sim, draft(client, sim, a, line("A1", "1", "10.00"))["id"])
    draft_a = draft(client, sim, a, line("A2", "1", "11.00"))
    open_b = finalize(client, sim, draft(client, sim, b, line("B1", "1", "12.00"))["id"])
    headers = auth(sim.admin_key)

    def ids(query: str) -> set[str]:
        r = client.get(f"/v1/invoices?{query}", headers=headers)
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()["data"]}

    assert ids("customer=crm-a") == {open_a["id"], draft_a["id"]}
    assert ids(f"customer={b}") == {open_b["id"]}
    assert ids("status=draft") == {draft_a["id"]}
    assert ids("status=open") == {open_a["id"], open_b["id"]}
    assert ids("from=2026-01-10&to=2026-01-10") == {open_a["id"], open_b["id"]}
    assert ids("from=2026-01-11") == set()
    seen: list[str] = []
    cursor = ""
    while True:
        page = client.get(f"/v1/invoices?limit=2{cursor}", headers=headers).json()
        seen += [x["id"] for x in page["data"]]
        if not page["next_cursor"]:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted([open_a["id"], draft_a["id"], open_b["id"]])
    assert_problem(client.get("/v1/invoices?status=late", headers=headers), 400)
    assert_problem(client.get("/v1/invoices?cursor=zz", headers=headers), 400)
    assert_problem(client.get("/v1/invoices?customer=nobody", headers=headers), 404)


def test_invoice_document_carries_what_an_invoice_must(
    client: Any, owner_conn: psycopg.Connection, sim: BookFixture
) -> None:
    owner_conn.execute(
        "update books set settings = %s where id = %s",
        (
            Jsonb(
                {
                    "legal_name": "Seller & Co Ltd",
                    "address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
                    "tax_id": "US-123",
                }
            ),
            sim.id,
        ),
    )
    cid = customer(
        client,
        sim,
        name="Buyer <GmbH>",
        tax_rate="0.19",
        address={"line1": "Hauptstr. 2", "postal_code": "10115", "city": "Berlin"},
    )
    body = draft(
        client,
        sim,
        cid,
        line("Plan", "1", "100.00", service_start="2026-01-01", service_end="2026-02-01"),
    )
    headers = auth(sim.admin_key)
    preview = client.get(f"/v1/invoices/{body['id']}/document", headers=headers)
    assert preview.status_code == 200
    assert "DRAFT" in preview.text
    invoice = finalize(client, sim, body["id"])
    r = client.get(f"/v1/invoices/{invoice['id']}/document", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    for fact in (
        "INV-2026-000001",
        "Issue date",
        "Jan 10, 2026",  # issue date, in the book's locale (en_US unless set)
        "Jan 1\u2009–\u200931, 2026",  # the supply period [Jan 1, Feb 1), last day included
        "Feb 9, 2026",  # due date
        "Seller &amp; Co Ltd",
        "1 Main St",
        "US-123",
        "Buyer &lt;GmbH&gt;",  # escaped
        "10115 Berlin",
        "Plan",
        "19 %",
        "100.00",
        "19.00",
        "119.00",
    ):
        assert fact in page, fact
    assert "DRAFT" not in page and "Reverse charge" not in page

    rc = customer(client, sim, name="EU buyer", tax_rate="0.19", tax_treatment="reverse_charge")
    ex = customer(client, sim, name="Charity", tax_treatment="exempt")
    for cust, mention in ((rc, "Reverse charge"), (ex, "Exempt")):
        inv = finalize(client, sim, draft(client, sim, cust, line("Work", "1", "50.00"))["id"])
        assert inv["tax_total"] == "0.00" and inv["total"] == "50.00"
        doc = client.get(f"/v1/invoices/{inv['id']}/document", headers=headers).text
        assert mention in doc


# --- bad input writes nothing ---------------------------------------------------------


def _rejected(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    method: str,
    path: str,
    status: int,
    code: str | None = None,
    body: Any = None,
) -> dict[str, Any]:
    with runtime.connection() as conn:
        before = billing_counts(conn, book.id)
    r = client.request(method, path, json=body, headers=auth(book.admin_key))
    problem = assert_problem(r, status, code)
    with runtime.connection() as conn:
        assert billing_counts(conn, book.id) == before
    return problem


def test_bad_invoice_requests_get_a_problem_and_write_nothing(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    cid = customer(client, sim)
    eur = customer(client, sim, "EUR")
    product = client.post(
        "/v1/products", json={"name": "Seat"}, headers=auth(sim.admin_key)
    ).json()["id"]
    usd_price = client.post(
        "/v1/prices",
        json={
            "product": product,
            "currency": "USD",
            "charge_model": "per_unit",
            "unit_amount": "9",
        },
        headers=auth(sim.admin_key),
    ).json()["id"]

    def post(body: dict[str, Any], status: int, code: str | None = None) -> dict[str, Any]:
        return _rejected(client, runtime, sim, "POST", "/v1/invoices", status, code, body)

    ok = line("Work", "1", "10.00")
    post({"customer": str(uuid.uuid4()), "lines": [ok]}, 404, "not_found")
    post({"customer": "crm-unknown", "lines": [ok]}, 404, "not_found")
    post({"customer": cid, "lines": [{"price": str(uuid.uuid4()), "quantity": "1"}]}, 404)
    mismatch = post({"customer": eur, "lines": [{"price": usd_price, "quantity": "2"}]}, 422)
    assert "EUR" in mismatch["detail"] and "USD" in mismatch["detail"]
    negative = post({"customer": cid, "lines": [line("Work", "-1", "10.00")]}, 422)
    assert "quantity" in negative["detail"]
    number = post(
        {"customer": cid, "lines": [{"description": "x", "quantity": "1", "unit_amount": 10.5}]},
        400,
        "validation_error",
    )
    assert "decimal strings" in number["detail"]
    post({"customer": cid, "lines": [line("Work", "1", "1e3")]}, 422, "invalid_amount")
    post(
        {
            "customer": cid,
            "lines": [line("W", "1", "1.00", service_start="2026-02-30", service_end="2026-03-01")],
        },
        400,
        "validation_error",
    )
    backwards = post(
        {
            "customer": cid,
            "lines": [line("W", "1", "1.00", service_start="2026-03-01", service_end="2026-02-01")],
        },
        422,
    )
    assert "service_end" in backwards["detail"]
    post({"customer": cid, "lines": [line("W", "1", "1.00", service_start="2026-03-01")]}, 422)
    post({"customer": cid, "lines": []}, 422)
    post({"customer": cid, "lines": [line("W", "1", "1.00", revenue_account="Income:Nope")]}, 422)
    post({"customer": cid, "lines": [ok], "surprise": 1}, 400, "validation_error")
    _rejected(client, runtime, sim, "POST", f"/v1/invoices/{uuid.uuid4()}/finalize", 404)
    _rejected(client, runtime, sim, "POST", "/v1/invoices/not-an-id/void", 404)


def test_finalizing_twice_is_a_conflict(client: Any, runtime: Runtime, sim: BookFixture) -> None:
    cid = customer(client, sim)
    invoice = finalize(client, sim, draft(client, sim, cid, line("Work", "1", "10.00"))["id"])
    problem = _rejected(
        client, runtime, sim, "POST", f"/v1/invoices/{invoice['id']}/finalize", 409, "invalid_state"
    )
    assert "INV-2026-000001" in problem["detail"]


@pytest.mark.parametrize("how", ["paid", "credited"])
def test_voiding_a_paid_or_credited_invoice_is_a_conflict(
    client: Any, runtime: Runtime, sim: BookFixture, how: str
) -> None:
    cid = customer(client, sim)
    invoice = finalize(client, sim, draft(client, sim, cid, line("Work", "1", "108.00"))["id"])
    doc = f"invoice:{invoice['id']}"
    if how == "paid":
        entry = payment_entry(
            uuid.uuid4(),
            cid,
            ISSUE,
            Money.of("50.00", "USD"),
            "Assets:Bank:Operating",
            [Allocation(invoice["id"], Money.of("50.00", "USD"))],
        )
    else:
        via = {"via": f"credit_note:{uuid.uuid4()}"}
        entry = build_entry(
            ISSUE,
            "credit note",
            [
                Posting("Income:Contra:Credit-Notes", Money.of("8.00", "USD"), cid, doc, via),
                Posting("Assets:Receivable:Trade", Money.of("-8.00", "USD"), cid, doc, via),
            ],
        )
    with unit_of_work(runtime.connection) as uow:
        post_entry(uow.conn, sim.id, entry)
        uow.commit()
    shown = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(sim.admin_key)).json()
    if how == "paid":
        assert (shown["amount_paid"], shown["amount_due"]) == ("50.00", "58.00")
    else:
        assert (shown["amount_credited"], shown["amount_due"]) == ("8.00", "100.00")
    _rejected(
        client, runtime, sim, "POST", f"/v1/invoices/{invoice['id']}/void", 409, "invalid_state"
    )


def test_finalized_invoice_cannot_change_even_in_raw_sql(
    client: Any, sim: BookFixture, app_conn: psycopg.Connection
) -> None:
    cid = customer(client, sim)
    invoice = finalize(client, sim, draft(client, sim, cid, line("Work", "1", "10.00"))["id"])
    key = (sim.id, uuid.UUID(invoice["id"]))
    statements = [
        ("update invoices set total = 1 where book_id = %s and id = %s", "invoices_frozen"),
        ("update invoices set number = 'X' where book_id = %s and id = %s", "invoices_frozen"),
        ("delete from invoices where book_id = %s and id = %s", "invoices_frozen"),
        (
            "update invoice_lines set amount = 1 where book_id = %s and invoice_id = %s",
            "invoice_lines_frozen",
        ),
        (
            "delete from invoice_lines where book_id = %s and invoice_id = %s",
            "invoice_lines_frozen",
        ),
        (
            "insert into invoice_lines (book_id, invoice_id, line_no, kind, description, quantity,"
            " unit_amount, amount, revenue_account)"
            " values (%s, %s, 9, 'one_off', 'x', 1, 1, 1, 'Income:Services')",
            "invoice_lines_frozen",
        ),
    ]
    for sql, constraint in statements:
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            app_conn.execute(sql, key)
        assert caught.value.diag.constraint_name == constraint, sql
    row = app_conn.execute(
        "select total, number from invoices where book_id = %s and id = %s", key
    ).fetchone()
    assert row == (D("10.00"), "INV-2026-000001")
