"""MSP on real PostgreSQL: the retainer golden case, devices, T&M cap, bad input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import pytest

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.errors import DocumentState, InvalidBillingRequest
from billing.postgres import msp
from billing.postgres.customers import CustomerSpec, upsert_customer
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture

T = TypeVar("T")


def tx(runtime: Runtime, work: Callable[[psycopg.Connection], T]) -> T:
    with unit_of_work(runtime.connection) as uow:
        result = work(uow.conn)
        uow.commit()
    return result


def customer(runtime: Runtime, book: BookFixture, name: str = "Harbor Dental") -> str:
    found, _ = tx(runtime, lambda c: upsert_customer(c, book.id, CustomerSpec(name, "USD")))
    return str(found.id)


def entry_postings(conn: psycopg.Connection, book_id: uuid.UUID, kind: str) -> list[Any]:
    return conn.execute(
        "select e.effective_date, a.name, p.amount from postings p"
        " join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id"
        " join accounts a on a.id = p.account_id"
        " where p.book_id = %s and e.metadata->>'kind' = %s"
        " order by e.effective_date, a.name",
        (book_id, kind),
    ).fetchall()


def invoice_postings(conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: Any) -> set[Any]:
    rows = conn.execute(
        "select a.name, p.amount from postings p join accounts a on a.id = p.account_id"
        " where p.book_id = %s and p.document = %s",
        (book_id, f"invoice:{invoice_id}"),
    ).fetchall()
    return {(a, Decimal(x)) for a, x in rows}


def balance(conn: psycopg.Connection, book_id: uuid.UUID, account: str) -> Decimal:
    row = conn.execute(
        "select coalesce(sum(p.amount), 0) from postings p join accounts a on a.id = p.account_id"
        " where p.book_id = %s and a.name = %s",
        (book_id, account),
    ).fetchone()
    assert row is not None
    return Decimal(row[0])


def add_time(
    runtime: Runtime, book: BookFixture, contract: str, day: date, minutes: int, **kw: Any
) -> msp.TimeEntry:
    spec = msp.TimeEntrySpec(
        person=kw.pop("person", "Dana"),
        contract=contract,
        date=day,
        role="engineer",
        minutes=minutes,
        **kw,
    )
    entry = tx(runtime, lambda c: msp.create_time_entry(c, book.id, spec))
    return tx(runtime, lambda c: msp.approve_time_entry(c, book.id, str(entry.id), day))


def test_retainer_overrun_then_carry_over_and_breakage(runtime: Runtime, book: BookFixture) -> None:
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
    sept = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 9, 1)))
    assert [i.total for i in sept.invoices] == [Decimal("3000.00")]
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, sept.invoices[0].id) == {
            ("Assets:Receivable:Trade", Decimal("3000.00")),
            ("Liabilities:Prepaid-Hours", Decimal("-3000.00")),
        }
    # 23.5 approved hours in September: 10 + 10 + 3.5.
    first = add_time(runtime, book, cid, date(2026, 9, 8), 600)
    add_time(runtime, book, cid, date(2026, 9, 15), 600)
    last = add_time(runtime, book, cid, date(2026, 9, 22), 210)
    assert (last.drawn_minutes, last.overage_minutes) == (0, 210)
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, "retainer_drawdown") == [
            (date(2026, 9, 8), "Income:Services", Decimal("-1500.00")),
            (date(2026, 9, 8), "Liabilities:Prepaid-Hours", Decimal("1500.00")),
            (date(2026, 9, 15), "Income:Services", Decimal("-1500.00")),
            (date(2026, 9, 15), "Liabilities:Prepaid-Hours", Decimal("1500.00")),
        ]
    october = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    (oct_invoice,) = october.invoices
    assert [(line.description, line.amount) for line in oct_invoice.lines] == [
        (
            "Retainer 2026-09-01–2026-09-30 draw-down: 20.00 h included, 0.00 h carried in,"
            " 20.00 h drawn, 3.50 h overage, 0.00 h carried over, 0.00 h expired",
            Decimal("0.00"),
        ),
        ("Retainer 2026-10-01–2026-10-31: 20 h included", Decimal("3000.00")),
        ("Retainer overage: 3.50 h at 175.00/h", Decimal("612.50")),
    ]
    # The drawn entries are invoiced by the summary line, the overage entry by its line.
    with runtime.connection() as conn:
        traced = conn.execute(
            "select date, status, invoice_line from time_entries where book_id = %s order by date",
            (book.id,),
        ).fetchall()
        assert traced == [
            (date(2026, 9, 8), "invoiced", 1),
            (date(2026, 9, 15), "invoiced", 1),
            (date(2026, 9, 22), "invoiced", 3),
        ]
        statement = msp.time_statement(conn, book.id, oct_invoice)
        realization = msp.realization_report(conn, book.id, date(2026, 9, 1), date(2026, 10, 1))
    columns = ("date", "hours", "rate", "amount", "description")
    assert [tuple(r[k] for k in columns) for r in statement] == [
        ("2026-09-08", "10.00", "150.00", "0.00", "(retainer: included)"),
        ("2026-09-15", "10.00", "150.00", "0.00", "(retainer: included)"),
        ("2026-09-22", "3.50", "175.00", "612.50", "(retainer: overage)"),
    ]
    # Invoiced by the summary line, a drawn entry is as immutable as any invoiced one.
    with pytest.raises(DocumentState):
        tx(runtime, lambda c: msp.update_time_entry(c, book.id, str(first.id), "edited", None))
    # Standard 23.5 h × 150.00 = 3,525.00; billed 20 h drawn at 150.00 + 612.50 = 3,612.50.
    assert [(r.standard, r.billed, r.realization) for r in realization] == [
        (Decimal("3525.00"), Decimal("3612.50"), Decimal("1.0248"))
    ]
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, oct_invoice.id) == {
            ("Assets:Receivable:Trade", Decimal("3612.50")),
            ("Liabilities:Prepaid-Hours", Decimal("-3000.00")),
            ("Income:Services", Decimal("-612.50")),
        }
    overage_entry = tx(runtime, lambda c: msp.get_time_entry(c, book.id, str(last.id)))
    assert (overage_entry.status, overage_entry.invoice_id) == ("invoiced", oct_invoice.id)
    # October: 12 h used; carry over up to 5 h.
    add_time(runtime, book, cid, date(2026, 10, 6), 720)
    november = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    assert november.expired_minutes == {cid: 180}
    assert [(line.description, line.amount) for line in november.invoices[0].lines] == [
        (
            "Retainer 2026-10-01–2026-10-31 draw-down: 20.00 h included, 0.00 h carried in,"
            " 12.00 h drawn, 0.00 h overage, 5.00 h carried over, 3.00 h expired",
            Decimal("0.00"),
        ),
        ("Retainer 2026-11-01–2026-11-30: 20 h included", Decimal("3000.00")),
    ]
    october_time = tx(runtime, lambda c: msp.time_statement(c, book.id, november.invoices[0]))
    assert [(r["date"], r["hours"], r["amount"]) for r in october_time] == [
        ("2026-10-06", "12.00", "0.00")
    ]
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, "retainer_expiry") == [
            (date(2026, 10, 31), "Income:Breakage", Decimal("-450.00")),
            (date(2026, 10, 31), "Liabilities:Prepaid-Hours", Decimal("450.00")),
        ]
        periods = conn.execute(
            "select period_start, carried_in_minutes, drawn_minutes, carried_out_minutes,"
            " expired_minutes from contract_periods where book_id = %s order by period_start",
            (book.id,),
        ).fetchall()
        # November's 3,000.00 fee plus the 5 carried hours (750.00) are still prepaid.
        assert balance(conn, book.id, "Liabilities:Prepaid-Hours") == Decimal("-3750.00")
        assert balance(conn, book.id, "Income:Breakage") == Decimal("-450.00")
        assert balance(conn, book.id, "Income:Services") == Decimal("-5412.50")
    assert periods == [
        (date(2026, 9, 1), 0, 1200, 0, 0),
        (date(2026, 10, 1), 0, 720, 300, 180),
        (date(2026, 11, 1), 300, 0, 0, 0),
    ]
    again = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    assert again.invoices == [] and again.expired_minutes == {}
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []


@pytest.mark.parametrize(
    ("proration", "device_line"),
    [("none", Decimal("235.00")), ("daily", Decimal("217.50"))],
)
def test_devices_from_40_to_47_mid_cycle(
    runtime: Runtime, book: BookFixture, proration: str, device_line: Decimal
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "managed_services",
            date(2026, 9, 1),
            {"monthly_fee": "500.00", "unit_price": "5.00", "proration": proration},
        ),
    )
    tx(runtime, lambda c: msp.record_count(c, book.id, str(contract.id), date(2026, 9, 1), 40))
    tx(runtime, lambda c: msp.record_count(c, book.id, str(contract.id), date(2026, 9, 16), 47))
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    (invoice,) = run.invoices
    # none: 47 at cut-off × 5.00; daily: (40 × 15 + 47 × 15) / 30 × 5.00.
    assert [line.amount for line in invoice.lines] == [Decimal("500.00"), device_line]
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, invoice.id) == {
            ("Assets:Receivable:Trade", Decimal("500.00") + device_line),
            ("Income:Services", Decimal("-500.00")),
            ("Income:Services", -device_line),
        }


def test_time_and_materials_cap_writes_down_the_hours_beyond_it(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "time_and_materials",
            date(2026, 9, 1),
            {
                "hourly_rate": "100.00",
                "cap": "1000.00",
                "rounding": {"increment_minutes": 15, "mode": "up"},
            },
        ),
    )
    cid = str(contract.id)
    add_time(runtime, book, cid, date(2026, 9, 3), 480, ticket="T-1", notes="Migration")
    add_time(runtime, book, cid, date(2026, 9, 4), 175, ticket="T-2", notes="Cut-over")  # → 3 h
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    (invoice,) = run.invoices
    assert run.written_down == {cid: Decimal("100.00")}
    assert [(line.description, line.amount) for line in invoice.lines] == [
        ("Time and materials 2026-09-01–2026-09-30: 11.00 h", Decimal("1000.00"))
    ]
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, invoice.id) == {
            ("Assets:Receivable:Trade", Decimal("1000.00")),
            ("Income:Services", Decimal("-1000.00")),
        }
        rows = msp.time_statement(conn, book.id, invoice)
    assert [(r["ticket"], r["hours"], r["rate"], r["amount"]) for r in rows] == [
        ("T-1", "8.00", "100.00", "800.00"),
        ("T-2", "3.00", "100.00", "200.00"),
    ]
    assert (
        msp.statement_csv(rows).splitlines()[0]
        == "date,person,project,ticket,description,hours,rate,amount"
    )


def test_bad_time_entries_are_refused_and_write_nothing(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "time_and_materials",
            date(2026, 9, 1),
            {"hourly_rate": "100.00"},
            end_date=date(2026, 10, 1),
        ),
    )
    cid = str(contract.id)

    def create(**kw: Any) -> msp.TimeEntry:
        base: dict[str, Any] = {
            "person": "Dana",
            "contract": cid,
            "date": date(2026, 9, 3),
            "role": "engineer",
        }
        base.update(kw)
        return tx(runtime, lambda c: msp.create_time_entry(c, book.id, msp.TimeEntrySpec(**base)))

    first = create(start="09:00", end="10:30")
    assert (first.minutes, first.amount) == (90, Decimal("150.00"))
    with pytest.raises(DocumentState):
        create(start="10:00", end="11:00")  # overlaps 09:00-10:30 for Dana
    with pytest.raises(InvalidBillingRequest):
        create(minutes=-30)
    with pytest.raises(DocumentState):
        create(minutes=30, date=date(2026, 10, 5))  # the contract has ended
    other = create(start="10:30", end="11:00")  # touching is not overlapping
    tx(runtime, lambda c: msp.approve_time_entry(c, book.id, str(other.id), date(2026, 9, 3)))
    with pytest.raises(DocumentState):
        tx(runtime, lambda c: msp.update_time_entry(c, book.id, str(other.id), "edited", None))
    tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    with pytest.raises(DocumentState):  # invoiced
        tx(runtime, lambda c: msp.update_time_entry(c, book.id, str(other.id), "edited", None))
    tx(runtime, lambda c: msp.close_contract(c, book.id, cid))
    with pytest.raises(DocumentState):
        create(minutes=30, date=date(2026, 9, 20))
    with runtime.connection() as conn:
        rows = conn.execute(
            "select minutes, status, notes from time_entries where book_id = %s order by minutes",
            (book.id,),
        ).fetchall()
    assert rows == [(30, "invoiced", ""), (90, "draft", "")]


def test_time_approved_after_its_period_was_invoiced_goes_on_the_next_invoice(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "time_and_materials", date(2026, 9, 1), {"hourly_rate": "100.00"}
        ),
    )
    cid = str(contract.id)
    add_time(runtime, book, cid, date(2026, 9, 5), 60, ticket="T-1")
    add_time(runtime, book, cid, date(2026, 9, 6), 60, billable="do_not_bill", ticket="T-int")
    first = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    assert [i.total for i in first.invoices] == [Decimal("100.00")]
    with runtime.connection() as conn:
        statement = msp.time_statement(conn, book.id, first.invoices[0])
    assert [r["ticket"] for r in statement] == ["T-1"]  # do-not-bill time stays internal
    add_time(runtime, book, cid, date(2026, 9, 20), 90, ticket="T-late")
    second = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    (invoice,) = second.invoices
    assert [(line.description, line.amount) for line in invoice.lines] == [
        ("Time and materials 2026-09-01–2026-09-30: 1.50 h", Decimal("150.00"))
    ]


def test_a_milestone_is_earned_on_completion_and_billed_against_unbilled(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "fixed_fee",
            date(2026, 9, 1),
            {
                "milestones": [
                    {"name": "Design", "amount": "5000.00"},
                    {"name": "Go-live", "amount": "7500.00"},
                ]
            },
        ),
    )
    cid = str(contract.id)
    nothing = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 9, 30)))
    assert nothing.invoices == []
    tx(runtime, lambda c: msp.complete_milestone(c, book.id, cid, "Design", date(2026, 10, 5)))
    with pytest.raises(DocumentState):
        tx(runtime, lambda c: msp.complete_milestone(c, book.id, cid, "Design", date(2026, 10, 6)))
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, "milestone_completed") == [
            (date(2026, 10, 5), "Assets:Receivable:Unbilled", Decimal("5000.00")),
            (date(2026, 10, 5), "Income:Services", Decimal("-5000.00")),
        ]
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 31)))
    (invoice,) = run.invoices
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, invoice.id) == {
            ("Assets:Receivable:Trade", Decimal("5000.00")),
            ("Assets:Receivable:Unbilled", Decimal("-5000.00")),
        }
        assert balance(conn, book.id, "Assets:Receivable:Unbilled") == Decimal("0.00")
        assert balance(conn, book.id, "Income:Services") == Decimal("-5000.00")
    again = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 31)))
    assert again.invoices == []


@pytest.mark.parametrize(
    ("cap", "accrued", "lines"),
    [
        (None, Decimal("300.00"), [Decimal("300.00"), Decimal("50.00")]),
        ("250.00", Decimal("250.00"), [Decimal("250.00")]),
    ],
)
def test_wip_accrued_at_month_end_is_relieved_by_the_invoice(
    runtime: Runtime, book: BookFixture, cap: str | None, accrued: Decimal, lines: list[Decimal]
) -> None:
    client = customer(runtime, book)
    terms: dict[str, Any] = {"hourly_rate": "100.00"}
    if cap:
        terms["cap"] = cap
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "time_and_materials", date(2026, 9, 1), terms
        ),
    )
    cid = str(contract.id)
    add_time(runtime, book, cid, date(2026, 9, 10), 120)
    add_time(runtime, book, cid, date(2026, 9, 11), 60)
    with pytest.raises(InvalidBillingRequest):
        tx(runtime, lambda c: msp.accrue_wip(c, book.id, date(2026, 9, 29)))
    wip = tx(runtime, lambda c: msp.accrue_wip(c, book.id, date(2026, 9, 30)))
    assert [(w.amount, w.entries) for w in wip] == [(accrued, 2)]
    assert tx(runtime, lambda c: msp.accrue_wip(c, book.id, date(2026, 9, 30))) == []
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, "wip_accrual") == [
            (date(2026, 9, 30), "Assets:Receivable:Unbilled", accrued),
            (date(2026, 9, 30), "Income:Services", -accrued),
        ]
    add_time(runtime, book, cid, date(2026, 9, 30), 30)  # approved after the accrual
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    (invoice,) = run.invoices
    assert [line.amount for line in invoice.lines] == lines
    billed = sum(lines, Decimal(0))
    with runtime.connection() as conn:
        expected = {
            ("Assets:Receivable:Trade", billed),
            ("Assets:Receivable:Unbilled", -accrued),
        }
        if billed != accrued:
            expected.add(("Income:Services", accrued - billed))
        assert invoice_postings(conn, book.id, invoice.id) == expected
        assert balance(conn, book.id, "Assets:Receivable:Unbilled") == Decimal("0.00")
        assert balance(conn, book.id, "Income:Services") == -billed
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []


def test_verify_rederives_prepaid_hours_and_wip_from_the_time_sub_ledger(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    client = customer(runtime, book)
    retainer = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "retainer",
            date(2026, 9, 1),
            {"included_hours": "10", "hourly_rate": "100.00", "overage_rate": "120.00"},
        ),
    )
    hourly = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "time_and_materials", date(2026, 9, 1), {"hourly_rate": "90.00"}
        ),
    )
    tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 9, 1)))
    drawn = add_time(runtime, book, str(retainer.id), date(2026, 9, 8), 90)
    accrued = add_time(runtime, book, str(hourly.id), date(2026, 9, 9), 60)
    tx(runtime, lambda c: msp.accrue_wip(c, book.id, date(2026, 9, 30)))
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []
    # Behind the services' backs: the sub-ledger no longer says what was posted.
    owner_conn.execute(
        "update time_entries set drawn_minutes = 60 where book_id = %s and id = %s",
        (book.id, drawn.id),
    )
    owner_conn.execute(
        "update time_entries set accrued_amount = 80 where book_id = %s and id = %s",
        (book.id, accrued.id),
    )
    with runtime.connection() as conn:
        found = verify_everything(conn, book.id)
    assert sorted(d.check for d in found) == ["retainer_prepaid_hours", "unbilled_time"]


def test_an_approved_entry_changes_only_by_an_adjusting_entry(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    hourly = tx(
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
    original = add_time(runtime, book, str(hourly.id), date(2026, 9, 3), 50)  # → 60 min
    with pytest.raises(DocumentState):
        tx(runtime, lambda c: msp.update_time_entry(c, book.id, str(original.id), "x", None))

    def adjust(minutes: int) -> msp.TimeEntry:
        spec = msp.TimeEntrySpec(
            person="",
            contract=str(hourly.id),
            date=date(2026, 9, 10),
            role="",
            minutes=minutes,
            adjusts=str(original.id),
        )
        return tx(runtime, lambda c: msp.create_time_entry(c, book.id, spec))

    with pytest.raises(InvalidBillingRequest):
        adjust(-51)  # more than the entry has
    less = adjust(-20)  # 30 raw minutes → 30 rounded: 30 fewer rounded minutes
    assert (less.minutes, less.rounded_minutes, less.amount) == (-20, -30, Decimal("-50.00"))
    tx(runtime, lambda c: msp.approve_time_entry(c, book.id, str(less.id), date(2026, 9, 10)))
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    assert [line.amount for line in run.invoices[0].lines] == [Decimal("50.00")]


def test_a_negative_adjustment_gives_retainer_hours_back(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    retainer = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "retainer",
            date(2026, 9, 1),
            {"included_hours": "10", "hourly_rate": "100.00", "overage_rate": "120.00"},
        ),
    )
    original = add_time(runtime, book, str(retainer.id), date(2026, 9, 3), 660)  # 10 h + 1 h
    assert (original.drawn_minutes, original.overage_minutes) == (600, 60)
    spec = msp.TimeEntrySpec(
        person="",
        contract=str(retainer.id),
        date=date(2026, 9, 4),
        role="",
        minutes=-90,
        adjusts=str(original.id),
    )
    fix = tx(runtime, lambda c: msp.create_time_entry(c, book.id, spec))
    fix = tx(runtime, lambda c: msp.approve_time_entry(c, book.id, str(fix.id), date(2026, 9, 4)))
    assert (fix.drawn_minutes, fix.overage_minutes) == (-30, -60)  # the overage goes first
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, "retainer_drawdown")[-2:] == [
            (date(2026, 9, 4), "Income:Services", Decimal("50.00")),
            (date(2026, 9, 4), "Liabilities:Prepaid-Hours", Decimal("-50.00")),
        ]
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    assert [line.kind for line in run.invoices[0].lines] == [
        "retainer_fee",
        "retainer_summary",
        "retainer_fee",
    ]
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []
