"""Services (MSP) through the HTTP API: rate cards, contracts, time entries,
approval, the contract billing run and the time statement; bad input is a 4xx
that writes nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.invoice_pdf import pdf_support
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client


def pdf_text(content: bytes) -> str:
    from pypdf import PdfReader

    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 9, 1))


def count(runtime: Runtime, book: BookFixture, table: str) -> int:
    with runtime.connection() as conn:
        row = conn.execute(
            f"select count(*) from {table} where book_id = %s", (book.id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_time_billed_through_the_api_with_its_statement(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    h = auth(sim.admin_key)
    customer = client.post("/v1/customers", json={"name": "Harbor", "currency": "USD"}, headers=h)
    cust = customer.json()["id"]
    card = client.post(
        "/v1/rate-cards",
        json={
            "name": "Standard",
            "currency": "USD",
            "rates": {"engineer": "120.00"},
            "default_rate": "100.00",
        },
        headers=h,
    )
    assert card.status_code == 201, card.text
    contract = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "time_and_materials",
            "start_date": "2026-09-01",
            "rounding": {"increment_minutes": 15, "mode": "up", "minimum_minutes": 30},
        },
        headers=h,
    )
    assert contract.status_code == 201, contract.text
    cid = contract.json()["id"]
    entry = client.post(
        "/v1/time-entries",
        json={
            "person": "Dana",
            "contract": cid,
            "date": "2026-09-02",
            "minutes": 37,
            "role": "engineer",
            "ticket": "T-9",
            "notes": "Printer",
        },
        headers=h,
    )
    assert entry.status_code == 201, entry.text
    body = entry.json()
    assert (
        body["minutes"],
        body["rounded_minutes"],
        body["hours"],
        body["rate"],
        body["amount"],
        body["rate_source"],
    ) == (37, 45, "0.75", "120.00", "90.00", "role")
    short = client.post(
        "/v1/time-entries",
        json={
            "person": "Dana",
            "contract": cid,
            "date": "2026-09-03",
            "minutes": 5,
            "role": "intern",
        },
        headers=h,
    ).json()
    assert (short["rounded_minutes"], short["amount"]) == (30, "50.00")  # minimum charge
    for e in (body["id"], short["id"]):
        approved = client.post(f"/v1/time-entries/{e}/approve", headers=h)
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert client.post("/v1/clock", json={"now": "2026-10-01"}, headers=h).status_code == 200
    run = client.post("/v1/contract-billing-runs", json={}, headers=h)
    assert run.status_code == 201, run.text
    (invoice,) = run.json()["invoices"]
    assert invoice["total"] == "140.00"
    csv_text = client.get(f"/v1/invoices/{invoice['id']}/time-statement?format=csv", headers=h)
    assert csv_text.text.splitlines() == [
        "date,person,project,ticket,description,hours,rate,amount",
        "2026-09-02,Dana,,T-9,Printer,0.75,120.00,90.00",
        "2026-09-03,Dana,,,,0.50,100.00,50.00",
    ]
    page = client.get(f"/v1/invoices/{invoice['id']}/time-statement?format=html", headers=h)
    assert page.headers["content-type"].startswith("text/html") and "T-9" in page.text
    printed = client.get(f"/v1/invoices/{invoice['id']}/time-statement?format=pdf", headers=h)
    if pdf_support() is None:  # WeasyPrint with Debian's pango (.ci/run installs it)
        assert printed.status_code == 200, printed.text
        assert printed.headers["content-type"] == "application/pdf"
        assert printed.content.startswith(b"%PDF-")
        assert "T-9" in pdf_text(printed.content)
    else:
        assert printed.status_code == 503 and printed.json()["code"] == "pdf_unavailable"
    util = client.get("/v1/reports/utilization?from=2026-09-01&to=2026-10-01", headers=h)
    assert util.json()["people"] == [
        {
            "person": "Dana",
            "billable_hours": "1.25",
            "non_billable_hours": "0.00",
            "available_hours": "176.00",
            "utilization": "0.0071",
        }
    ]
    real = client.get("/v1/reports/realization?from=2026-09-01&to=2026-10-01", headers=h)
    assert [(r["standard"], r["billed"], r["realization"]) for r in real.json()["clients"]] == [
        ("140.00", "140.00", "1.0000")
    ]
    edit = client.post(f"/v1/time-entries/{body['id']}", json={"notes": "x"}, headers=h)
    assert_problem(edit, 409)
    assert client.get(f"/v1/contracts/{cid}", headers=h).json()["type"] == "time_and_materials"


def test_bad_contracts_and_entries_are_4xx_and_write_nothing(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    h = auth(sim.admin_key)
    cust = client.post(
        "/v1/customers", json={"name": "Harbor", "currency": "USD"}, headers=h
    ).json()["id"]
    bad = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "retainer",
            "start_date": "2026-09-01",
            "hourly_rate": "150.00",
        },
        headers=h,
    )
    assert_problem(bad, 422)
    assert count(runtime, sim, "contracts") == 0
    cid = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "time_and_materials",
            "start_date": "2026-09-01",
            "hourly_rate": "100.00",
        },
        headers=h,
    ).json()["id"]
    negative = client.post(
        "/v1/time-entries",
        json={
            "person": "Dana",
            "contract": cid,
            "date": "2026-09-02",
            "minutes": -5,
            "role": "engineer",
        },
        headers=h,
    )
    assert_problem(negative, 422)
    assert count(runtime, sim, "time_entries") == 0


def test_manual_journals_cannot_name_a_contract(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    """Retainer draw-down and breakage name the contract; only billing posts them."""
    h = auth(sim.admin_key)
    cust = client.post(
        "/v1/customers", json={"name": "Harbor", "currency": "USD"}, headers=h
    ).json()["id"]
    cid = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "retainer",
            "start_date": "2026-09-01",
            "included_hours": "10",
            "hourly_rate": "100.00",
            "overage_rate": "120.00",
        },
        headers=h,
    ).json()["id"]
    body = {
        "effective_date": "2026-09-10",
        "memo": "hours by hand",
        "postings": [
            {
                "account": "Liabilities:Prepaid-Hours",
                "amount": "100.00",
                "currency": "USD",
                "document": f"contract:{cid}",
                "customer": cust,
            },
            {"account": "Income:Services", "amount": "-100.00", "currency": "USD"},
        ],
    }
    before = count(runtime, sim, "postings")
    assert_problem(
        client.post("/v1/journal-entries", json=body, headers=h), 422, "billing_document"
    )
    assert count(runtime, sim, "postings") == before
