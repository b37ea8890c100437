"""MSP through the HTTP API on PostgreSQL: devices and users priced on one
managed-services contract, a client's override rate card, the after-hours
multiplier, projects, and the time CSV import over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
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
    from datetime import date

    return make_book(runtime, "USD", date(2026, 9, 1))


def new_customer(client: Any, h: dict[str, str], name: str = "Harbor") -> str:
    made = client.post("/v1/customers", json={"name": name, "currency": "USD"}, headers=h)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_devices_and_users_at_their_own_prices_on_one_contract(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    h = auth(sim.admin_key)
    cust = new_customer(client, h)
    made = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "managed_services",
            "start_date": "2026-09-01",
            "monthly_fee": "500.00",
            "unit_prices": {"device": "5.00", "user": "12.50"},
        },
        headers=h,
    )
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    for body in (
        {"date": "2026-09-01", "quantity": 40},  # kind defaults to device
        {"date": "2026-09-16", "quantity": 47, "kind": "device"},
        {"date": "2026-09-01", "quantity": 12, "kind": "user"},
    ):
        pushed = client.post(f"/v1/contracts/{cid}/counts", json=body, headers=h)
        assert pushed.status_code == 201, pushed.text
    assert pushed.json()["counts"] == [
        {"date": "2026-09-01", "quantity": 40, "kind": "device"},
        {"date": "2026-09-16", "quantity": 47, "kind": "device"},
        {"date": "2026-09-01", "quantity": 12, "kind": "user"},
    ]
    bad = client.post(
        f"/v1/contracts/{cid}/counts",
        json={"date": "2026-09-02", "quantity": 3, "kind": "printer"},
        headers=h,
    )
    assert_problem(bad, 422)
    # A device-only contract (the single unit_price of before) refuses user counts.
    old = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "managed_services",
            "start_date": "2026-09-01",
            "monthly_fee": "100.00",
            "unit_price": "4.00",
        },
        headers=h,
    ).json()["id"]
    assert (
        client.post(
            f"/v1/contracts/{old}/counts", json={"date": "2026-09-01", "quantity": 10}, headers=h
        ).status_code
        == 201
    )
    users = client.post(
        f"/v1/contracts/{old}/counts",
        json={"date": "2026-09-01", "quantity": 3, "kind": "user"},
        headers=h,
    )
    assert_problem(users, 422)
    both = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "managed_services",
            "start_date": "2026-09-01",
            "monthly_fee": "1.00",
            "unit_price": "4.00",
            "unit_prices": {"device": "5.00"},
        },
        headers=h,
    )
    assert_problem(both, 422)
    assert count(runtime, sim, "contracts") == 2
    assert client.post("/v1/clock", json={"now": "2026-10-01"}, headers=h).status_code == 200
    run = client.post("/v1/contract-billing-runs", json={}, headers=h)
    assert run.status_code == 201, run.text
    (billed,) = run.json()["invoices"]
    invoice = client.get(f"/v1/invoices/{billed['id']}", headers=h).json()
    lines = [(line["description"], line["amount"]) for line in invoice["lines"]]
    assert lines == [
        ("Managed services 2026-09-01–2026-09-30", "500.00"),
        ("Devices 2026-09-01–2026-09-30: 47 at cut-off", "235.00"),  # 47 × 5.00
        ("Users 2026-09-01–2026-09-30: 12 at cut-off", "150.00"),  # 12 × 12.50
        ("Managed services 2026-09-01–2026-09-30", "100.00"),
        ("Devices 2026-09-01–2026-09-30: 10 at cut-off", "40.00"),
    ]
    assert invoice["total"] == "1025.00"


def test_a_client_override_card_and_after_hours_from_clock_times(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    h = auth(sim.admin_key)
    harbor = new_customer(client, h, "Harbor")
    other = new_customer(client, h, "Quay")
    book_card = {"name": "Standard", "currency": "USD", "rates": {"engineer": "120.00"}}
    book_card["default_rate"] = "100.00"
    assert client.post("/v1/rate-cards", json=book_card, headers=h).status_code == 201
    override = client.post(
        "/v1/rate-cards",
        json={
            "name": "Harbor rates",
            "currency": "USD",
            "customer": harbor,
            "rates": {"engineer": "140.00"},
        },
        headers=h,
    )
    assert override.status_code == 201, override.text
    terms = {
        "type": "time_and_materials",
        "start_date": "2026-09-01",
        "after_hours_multiplier": "1.5",
        "business_hours": {"start": "08:00", "end": "18:00"},
    }
    harbor_tm = client.post("/v1/contracts", json={"customer": harbor, **terms}, headers=h)
    assert harbor_tm.status_code == 201, harbor_tm.text
    other_tm = client.post("/v1/contracts", json={"customer": other, **terms}, headers=h)

    def entry(contract: Any, day: str, role: str = "engineer", **when: Any) -> Any:
        body = {"person": "Dana", "contract": contract.json()["id"], "date": day, "role": role}
        made = client.post("/v1/time-entries", json=body | when, headers=h)
        assert made.status_code == 201, made.text
        answer = made.json()
        return (answer["after_hours"], answer["rate"], answer["rate_source"], answer["amount"])

    assert [
        entry(harbor_tm, "2026-09-02", start="09:00", end="10:00"),  # inside the window
        entry(harbor_tm, "2026-09-02", start="18:00", end="19:00"),  # after it
        entry(harbor_tm, "2026-09-03", start="07:30", end="08:30"),  # partly before: all after
        # The clock times decide over the flag when the contract states business hours.
        entry(harbor_tm, "2026-09-04", start="10:00", end="11:00", after_hours=True),
        entry(harbor_tm, "2026-09-05", minutes=60, after_hours=True),  # no clock: the flag
        entry(harbor_tm, "2026-09-06", role="intern", minutes=30),  # no role rate: default
        entry(other_tm, "2026-09-07", start="20:00", end="21:00"),  # the book's card
    ] == [
        (False, "140.00", "client_role", "140.00"),
        (True, "210.00", "client_role", "210.00"),
        (True, "210.00", "client_role", "210.00"),
        (False, "140.00", "client_role", "140.00"),
        (True, "210.00", "client_role", "210.00"),
        (False, "100.00", "default", "50.00"),
        (True, "180.00", "role", "180.00"),
    ]
    bad = client.post(
        "/v1/contracts",
        json={"customer": harbor, **terms, "business_hours": {"start": "18:00", "end": "08:00"}},
        headers=h,
    )
    assert_problem(bad, 422)
    assert count(runtime, sim, "contracts") == 2


CW_HEADER = (
    "Member,Date Start,Time Start,Time End,Hours Actual,Work Role,Billable Option,Notes,"
    "Ticket #,Project,Agreement,Time Entry ID"
)


def test_time_csv_import_over_http_with_projects_on_the_statement(
    client: Any, runtime: Runtime, sim: BookFixture
) -> None:
    h = auth(sim.admin_key)
    cust = new_customer(client, h)
    cid = client.post(
        "/v1/contracts",
        json={
            "customer": cust,
            "type": "time_and_materials",
            "start_date": "2026-09-01",
            "hourly_rate": "100.00",
            "rounding": {"increment_minutes": 15, "mode": "up"},
        },
        headers=h,
    ).json()["id"]
    csv_h = h | {"content-type": "text/csv"}
    good = "\n".join(
        [
            CW_HEADER,
            f"Dana,09/02/2026,09:00,09:37,,engineer,Billable,Printer,T-9,Office move,{cid},cw-1",
            f"Dana,2026-09-03,,,1.5,engineer,Billable,Firewall,,,{cid},cw-2",
        ]
    )
    # Line 3 is bad (its contract does not exist): nothing of the file is written.
    bad = good.replace(f",,{cid},cw-2", ",,00000000-0000-0000-0000-000000000000,cw-2")
    refused = client.post("/v1/time-entries/import", content=bad, headers=csv_h)
    body = assert_problem(refused, 404)
    assert body["detail"].startswith("line 3: ") and body["line"] == 3
    unknown = good.replace("Billable,Firewall", "Maybe,Firewall")
    assert_problem(client.post("/v1/time-entries/import", content=unknown, headers=csv_h), 422)
    as_json = client.post("/v1/time-entries/import", json={"csv": good}, headers=h)
    assert as_json.status_code in (400, 415), as_json.text
    assert count(runtime, sim, "time_entries") == 0
    made = client.post("/v1/time-entries/import?approve=true", content=good, headers=csv_h)
    assert made.status_code == 201, made.text
    assert made.json()["imported"] == 2
    assert [
        (e["project"], e["ticket"], e["rounded_minutes"], e["amount"], e["status"])
        for e in made.json()["time_entries"]
    ] == [
        ("Office move", "T-9", 45, "75.00", "approved"),
        (None, None, 90, "150.00", "approved"),
    ]
    one = client.post(
        "/v1/time-entries",
        json={
            "person": "Lee",
            "contract": cid,
            "date": "2026-09-04",
            "minutes": 30,
            "role": "engineer",
            "project": "Office move",
        },
        headers=h,
    )
    assert one.status_code == 201 and one.json()["project"] == "Office move"
    client.post(f"/v1/time-entries/{one.json()['id']}/approve", headers=h)
    assert client.post("/v1/clock", json={"now": "2026-10-01"}, headers=h).status_code == 200
    (invoice,) = client.post("/v1/contract-billing-runs", json={}, headers=h).json()["invoices"]
    assert invoice["total"] == "275.00"
    statement = client.get(f"/v1/invoices/{invoice['id']}/time-statement?format=csv", headers=h)
    assert statement.text.splitlines() == [
        "date,person,project,ticket,description,hours,rate,amount",
        "2026-09-02,Dana,Office move,T-9,Printer,0.75,100.00,75.00",
        "2026-09-03,Dana,,,Firewall,1.50,100.00,150.00",
        "2026-09-04,Lee,Office move,,,0.50,100.00,50.00",
    ]
