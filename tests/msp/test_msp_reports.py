"""MSP reports on real PostgreSQL with exact figures: unbilled WIP by client and
age, retainer burn-down, profitability per client at people's cost rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import msp, msp_expenses, msp_reports
from tests.conftest import BookFixture
from tests.msp.test_msp_ledger import add_time, customer, tx


def _expense(runtime: Runtime, book: BookFixture, contract: str, day: date, **kw: Any) -> None:
    spec = msp_expenses.ExpenseSpec(
        contract=contract, person="Dana", date=day, description="Parts", **kw
    )
    made = tx(runtime, lambda c: msp_expenses.create_expense(c, book.id, spec))
    tx(runtime, lambda c: msp_expenses.approve_expense(c, book.id, str(made.id)))


def test_unbilled_wip_by_client_and_age(runtime: Runtime, book: BookFixture) -> None:
    harbor = customer(runtime, book, "Harbor Dental")
    mill = customer(runtime, book, "Mill Street Law")
    hourly = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, harbor, "time_and_materials", date(2026, 8, 1), {"hourly_rate": "100.00"}
        ),
    )
    hid = str(hourly.id)
    add_time(runtime, book, hid, date(2026, 12, 20), 60)  # 11 days before as_of: 0-30
    add_time(runtime, book, hid, date(2026, 11, 15), 90)  # 46 days: 31-60
    add_time(runtime, book, hid, date(2026, 10, 10), 30)  # 82 days: 61-90
    add_time(runtime, book, hid, date(2026, 8, 20), 120)  # 133 days: 90+
    add_time(runtime, book, hid, date(2026, 12, 21), 60, billable="no_charge")  # no value
    _expense(runtime, book, hid, date(2026, 12, 1), amount="42.50", markup_percent="10")  # 30 d
    retainer = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            mill,
            "retainer",
            date(2026, 12, 1),
            {"included_hours": "1", "hourly_rate": "100.00", "overage_rate": "150.00"},
        ),
    )
    # 1 h drawn from the block (prepaid, not WIP), 0.5 h overage at 150.00: 75.00.
    add_time(runtime, book, str(retainer.id), date(2026, 12, 3), 90, person="Eli")
    project = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            mill,
            "fixed_fee",
            date(2026, 9, 1),
            {"milestones": [{"name": "Design", "amount": "2000.00"}]},
        ),
    )
    tx(
        runtime,
        lambda c: msp.complete_milestone(c, book.id, str(project.id), "Design", date(2026, 9, 25)),
    )
    with runtime.connection() as conn:
        rows = msp_reports.wip_by_age(conn, book.id, date(2026, 12, 31))
    by_customer = {str(w.customer_id): (w.buckets, w.total) for w in rows}
    assert by_customer == {
        harbor: (
            {
                "0-30": Decimal("146.75"),  # 100.00 + 46.75
                "31-60": Decimal("150.00"),
                "61-90": Decimal("50.00"),
                "90+": Decimal("200.00"),
            },
            Decimal("546.75"),
        ),
        mill: (
            {
                "0-30": Decimal("75.00"),
                "31-60": Decimal("0"),
                "61-90": Decimal("0"),
                "90+": Decimal("2000.00"),  # completed 97 days before
            },
            Decimal("2075.00"),
        ),
    }
    # Invoiced through November 1: August–October time is billed by then, so as of
    # November 30 only November's time and later is WIP; as of October 31 the
    # invoice (dated November 1) had not been issued, so it still counts.
    tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    with runtime.connection() as conn:
        november = {
            str(w.customer_id): w.total
            for w in msp_reports.wip_by_age(conn, book.id, date(2026, 11, 30))
        }
        october = {
            str(w.customer_id): w.total
            for w in msp_reports.wip_by_age(conn, book.id, date(2026, 10, 31))
        }
    assert november == {harbor: Decimal("150.00")}  # the milestone was invoiced on Nov 1
    assert october == {harbor: Decimal("250.00"), mill: Decimal("2000.00")}


def test_retainer_burn_down_per_period(runtime: Runtime, book: BookFixture) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "retainer",
            date(2026, 9, 1),
            {
                "included_hours": "20",
                "hourly_rate": "150.00",
                "overage_rate": "175.00",
                "rollover": "carry_over",
                "rollover_max_hours": "5",
            },
        ),
    )
    cid = str(contract.id)
    tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 9, 1)))
    add_time(runtime, book, cid, date(2026, 9, 8), 600)
    add_time(runtime, book, cid, date(2026, 9, 15), 600)
    add_time(runtime, book, cid, date(2026, 9, 22), 210)
    tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    add_time(runtime, book, cid, date(2026, 10, 6), 720)
    tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    with runtime.connection() as conn:
        rows = msp_reports.retainer_burn_down(conn, book.id, contract.id)
    assert [
        (
            r.period_start,
            r.included_minutes / 60,
            r.carried_in_minutes / 60,
            r.used_minutes / 60,
            r.overage_minutes / 60,
            r.remaining_minutes / 60,
            r.carried_out_minutes / 60,
            r.expired_minutes / 60,
            r.closed,
        )
        for r in rows
    ] == [
        (date(2026, 9, 1), 20, 0, 23.5, 3.5, 0, 0, 0, True),
        (date(2026, 10, 1), 20, 0, 12, 0, 8, 5, 3, True),
        (date(2026, 11, 1), 20, 5, 0, 0, 25, 0, 0, False),
    ]


def test_profitability_per_client_at_cost_rates(runtime: Runtime, book: BookFixture) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "time_and_materials",
            date(2026, 9, 1),
            {"hourly_rate": "100.00", "rounding": {"increment_minutes": 15, "mode": "up"}},
        ),
    )
    cid = str(contract.id)
    tx(runtime, lambda c: msp_reports.set_person(c, book.id, "Dana", "40.00", "USD", "engineer"))
    tx(runtime, lambda c: msp_reports.set_person(c, book.id, "Eli", "50.00", "USD"))
    tx(runtime, lambda c: msp_reports.set_person(c, book.id, "Eli", "55.50", "USD"))  # replaces
    with pytest.raises(InvalidBillingRequest):
        tx(runtime, lambda c: msp_reports.set_person(c, book.id, "Eli", "-1", "USD"))
    add_time(runtime, book, cid, date(2026, 9, 3), 90, person="Dana")  # bills 150.00
    add_time(runtime, book, cid, date(2026, 9, 4), 50, person="Eli")  # 1 h billed: 100.00
    add_time(runtime, book, cid, date(2026, 9, 5), 30, person="Eli", billable="no_charge")
    add_time(runtime, book, cid, date(2026, 9, 6), 60, person="Sam")  # no cost rate: 100.00
    _expense(runtime, book, cid, date(2026, 9, 7), amount="42.50", markup_percent="10")
    tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    with runtime.connection() as conn:
        found = msp_reports.profitability(conn, book.id, date(2026, 9, 1), date(2026, 11, 1))
        (row,) = found
        assert msp_reports.profitability(conn, book.id, date(2026, 9, 1), date(2026, 10, 1))[
            0
        ].revenue == Decimal(0)  # invoiced (revenue posted) on October 1
    # Revenue 150 + 100 + 100 + 46.75; labor 90 min × 40 + 50 × 55.50 + 30 × 55.50 (raw).
    assert (
        row.revenue,
        row.labor_cost,
        row.expense_cost,
        row.cost,
        row.margin,
        row.margin_ratio,
        row.unpriced_minutes,
    ) == (
        Decimal("396.75"),
        Decimal("134.00"),
        Decimal("42.50"),
        Decimal("176.50"),
        Decimal("220.25"),
        Decimal("0.5551"),
        60,
    )
