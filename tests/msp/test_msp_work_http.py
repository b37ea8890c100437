"""MSP expenses, progress, people and reports through the HTTP API; bad input is
a 4xx problem that writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.msp.test_msp_http import count


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 10, 1))


def test_expenses_progress_and_reports_over_http(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    h = auth(sim.admin_key)
    cust = client.post(
        "/v1/customers", json={"name": "Harbor", "currency": "USD"}, headers=h
    ).json()["id"]

    def post(path: str, body: dict[str, Any], status: int = 201) -> Any:
        response = client.post(path, json=body, headers=h)
        assert response.status_code == status, response.text
        return response.json()

    hourly = post(
        "/v1/contracts",
        {
            "customer": cust,
            "type": "time_and_materials",
            "start_date": "2026-09-01",
            "hourly_rate": "100.00",
        },
    )["id"]
    project = post(
        "/v1/contracts",
        {"customer": cust, "type": "fixed_fee", "start_date": "2026-09-01", "fee": "8000.00"},
    )["id"]
    receipt = {"file_name": "r.pdf", "content_type": "application/pdf", "vendor": "Acme"}
    exp = post(
        "/v1/expenses",
        {
            "contract": hourly,
            "person": "Dana",
            "date": "2026-09-10",
            "description": "Switch",
            "amount": "42.50",
            "markup_percent": "10",
            "receipt": receipt,
        },
    )
    assert (exp["status"], exp["amount"], exp["billable_amount"]) == ("draft", "42.50", "46.75")
    before = count(runtime, sim, "expenses")
    assert_problem(
        client.post(
            "/v1/expenses",
            json={
                **{k: exp[k] for k in ("contract", "person", "date", "description")},
                "amount": "-5.00",
            },
            headers=h,
        ),
        422,
    )
    assert count(runtime, sim, "expenses") == before
    post(f"/v1/expenses/{exp['id']}/approve", {}, 200)
    assert_problem(
        client.post(f"/v1/expenses/{exp['id']}", json={"description": "x"}, headers=h), 409
    )
    entry = post(
        "/v1/time-entries",
        {
            "person": "Dana",
            "contract": hourly,
            "date": "2026-09-11",
            "minutes": 90,
            "role": "engineer",
        },
    )
    post(f"/v1/time-entries/{entry['id']}/approve", {}, 200)
    prog = post(
        f"/v1/contracts/{project}/progress", {"date": "2026-09-20", "percent_complete": "25"}
    )
    assert (prog["earned"], prog["unbilled"], prog["deferred"]) == ("2000.00", "2000.00", "0.00")
    assert_problem(
        client.post(
            f"/v1/contracts/{project}/progress",
            json={"date": "2026-09-21", "percent_complete": "10"},
            headers=h,
        ),
        409,
    )
    post("/v1/people", {"name": "Dana", "cost_rate": "40.00", "currency": "USD"})
    assert [p["cost_rate"] for p in client.get("/v1/people", headers=h).json()["data"]] == ["40.00"]
    wip = client.get("/v1/reports/wip?as_of=2026-09-30", headers=h).json()
    assert wip["clients"] == [
        {
            "customer": cust,
            "currency": "USD",
            # 46.75 + 150.00 + 2,000.00 earned and not billed
            "buckets": {"0-30": "2196.75", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"},
            "total": "2196.75",
        }
    ]
    run = post("/v1/contract-billing-runs", {"as_of": "2026-10-01"})
    assert [i["total"] for i in run["invoices"]] == ["2196.75"]
    invoice = run["invoices"][0]["id"]
    statement = client.get(f"/v1/invoices/{invoice}/time-statement?format=csv", headers=h)
    assert statement.text.splitlines()[1:] == [
        "2026-09-11,Dana,,,,1.50,100.00,150.00",
        "2026-09-10,Dana,,,Expense: Switch (Acme),,,46.75",
    ]
    html = client.get(f"/v1/invoices/{invoice}/time-statement?format=html", headers=h).text
    assert "<h2>Expenses</h2>" in html and "Acme" in html
    prof = client.get("/v1/reports/profitability?from=2026-09-01&to=2026-11-01", headers=h)
    assert prof.json()["clients"] == [
        {
            "customer": cust,
            "currency": "USD",
            "revenue": "2196.75",
            "labor_cost": "60.00",
            "expense_cost": "42.50",
            "cost": "102.50",
            "margin": "2094.25",
            "margin_ratio": "0.9533",
            "unpriced_hours": "0.00",
        }
    ]
    burn = client.get("/v1/reports/retainer-burn-down", headers=h)
    assert burn.status_code == 200 and burn.json() == {"periods": []}
    assert client.get("/v1/expenses", headers=h).json()["data"][0]["status"] == "invoiced"
