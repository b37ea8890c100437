"""Billing runs: every due period exactly once, catch-up, repeats, crashes, currencies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres import billing_runs
from billing.postgres.subscriptions import ItemSpec, SubscriptionSpec, create_subscription
from ledger.periods import PeriodStatus, first_open_day
from ledger.postgres.books import set_period_status
from ledger.postgres.unit_of_work import unit_of_work
from ledger.postgres.verify import verify_book
from tests.billing.test_subscriptions import (
    balances,
    bill,
    customer,
    invoices_of,
    line_amounts,
    move_clock,
    plan_price,
)
from tests.conftest import make_book

D = Decimal
ROOT = Path(__file__).resolve().parents[2]


def test_anchor_on_jan_31_bills_feb_28_then_mar_31_in_one_catch_up_run(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 31))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "31.00")
        who = customer(uow.conn, book.id)
        create_subscription(
            uow.conn, book.id, SubscriptionSpec(who, [ItemSpec(price)]), date(2026, 1, 31)
        )
        uow.commit()
    move_clock(runtime, book.id, date(2026, 3, 31))
    run = bill(runtime, book.id, date(2026, 3, 31))
    assert (run.status, run.invoices_created) == ("completed", 3)
    invoices = invoices_of(runtime, book.id)
    assert [(i.number, i.issue_date, line_amounts(i)) for i in invoices] == [
        (
            "INV-2026-000001",
            date(2026, 1, 31),
            [(D("31.00"), date(2026, 1, 31), date(2026, 2, 28))],
        ),
        (
            "INV-2026-000002",
            date(2026, 2, 28),
            [(D("31.00"), date(2026, 2, 28), date(2026, 3, 31))],
        ),
        (
            "INV-2026-000003",
            date(2026, 3, 31),
            [(D("31.00"), date(2026, 3, 31), date(2026, 4, 30))],
        ),
    ]
    assert [i.due_date for i in invoices] == [
        date(2026, 3, 2),
        date(2026, 3, 30),
        date(2026, 4, 30),
    ]
    assert balances(runtime, book.id, date(2026, 3, 31)) == {
        "Assets:Receivable:Trade": D("93.00"),
        "Liabilities:Deferred-Revenue": D("-93.00"),
    }


def test_annual_and_monthly_and_a_repeated_run_creates_nothing_new(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 1))
    with unit_of_work(runtime.connection) as uow:
        annual = plan_price(uow.conn, book.id, "365.00", interval="year")
        monthly = plan_price(uow.conn, book.id, "10.00", model="per_unit")
        who = customer(uow.conn, book.id)
        for price, quantity in ((annual, 1), (monthly, 3)):
            create_subscription(
                uow.conn,
                book.id,
                SubscriptionSpec(who, [ItemSpec(price, D(quantity))]),
                date(2026, 1, 1),
            )
        uow.commit()
    move_clock(runtime, book.id, date(2026, 3, 1))
    first = bill(runtime, book.id, date(2026, 3, 1))
    again = bill(runtime, book.id, date(2026, 3, 1))
    assert (first.invoices_created, again.invoices_created) == (4, 0)
    assert again.status == "completed" and again.id != first.id
    invoices = invoices_of(runtime, book.id)
    assert [i.number for i in invoices] == [f"INV-2026-00000{n}" for n in range(1, 5)]
    assert sorted((i.total, i.supply_start, i.supply_end) for i in invoices) == [
        (D("30.00"), date(2026, 1, 1), date(2026, 2, 1)),
        (D("30.00"), date(2026, 2, 1), date(2026, 3, 1)),
        (D("30.00"), date(2026, 3, 1), date(2026, 4, 1)),
        (D("365.00"), date(2026, 1, 1), date(2027, 1, 1)),
    ]
    with runtime.connection() as conn:
        row = conn.execute(
            "select count(*), sum(invoices_created) from billing_runs where book_id = %s",
            (book.id,),
        ).fetchone()
    assert row == (2, 4)


def test_as_of_after_the_books_today_is_refused(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 1))
    with pytest.raises(InvalidBillingRequest, match="after the book's today"):
        billing_runs.run_billing(runtime.connection, book.id, date(2026, 1, 2), date(2026, 1, 1))
    with runtime.connection() as conn:
        assert conn.execute(
            "select count(*) from billing_runs where book_id = %s", (book.id,)
        ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("currency", "amount", "tax_rate", "total", "tax", "stub"),
    [
        # JPY has no minor unit: 1,000 × 16/31 = 516.13 → 516; 10 % tax on 1,000 → 100.
        ("JPY", "1000", "0.10", "1100", "100", "516"),
        # KWD has three: 10.500 × 16/31 = 5.419; 5 % tax → 0.525.
        ("KWD", "10.500", "0.05", "11.025", "0.525", "5.419"),
    ],
)
def test_jpy_and_kwd_subscriptions(
    runtime: Runtime, currency: str, amount: str, tax_rate: str, total: str, tax: str, stub: str
) -> None:
    book = make_book(runtime, currency, date(2026, 1, 1))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, amount, currency=currency)
        who = customer(uow.conn, book.id, currency, tax_rate=D(tax_rate))
        create_subscription(
            uow.conn, book.id, SubscriptionSpec(who, [ItemSpec(price)]), date(2026, 1, 1)
        )
        # A second one anchored on the 1st but starting on Jan 16: a 16-day stub first.
        create_subscription(
            uow.conn,
            book.id,
            SubscriptionSpec(
                who,
                [ItemSpec(price)],
                start_date=date(2026, 1, 16),
                billing_anchor=date(2026, 1, 1),
            ),
            date(2026, 1, 1),
        )
        uow.commit()
    move_clock(runtime, book.id, date(2026, 1, 16))
    bill(runtime, book.id, date(2026, 1, 16))
    full, partial = sorted(invoices_of(runtime, book.id), key=lambda i: i.supply_start or date.min)
    assert (full.currency, str(full.total), str(full.tax_total)) == (currency, total, tax)
    assert str(partial.subtotal) == stub
    assert (partial.supply_start, partial.supply_end) == (date(2026, 1, 16), date(2026, 2, 1))
    gross = D(total) + partial.total
    assert balances(runtime, book.id, date(2026, 1, 31))["Assets:Receivable:Trade"] == gross


@pytest.mark.slow
def test_a_run_killed_midway_and_resumed_invoices_every_period_exactly_once(
    runtime: Runtime, database_url: str
) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 1))
    count = 300
    with unit_of_work(runtime.connection) as uow:
        prices = [plan_price(uow.conn, book.id, a) for a in ("9.00", "19.00", "29.00")]
        customers = [customer(uow.conn, book.id) for _ in range(30)]
        for n in range(count):
            create_subscription(
                uow.conn,
                book.id,
                SubscriptionSpec(
                    customers[n % 30],
                    [ItemSpec(prices[n % 3], D(1 + n % 2))],
                    start_date=date(2026, 1, 1 + n % 28),
                ),
                date(2026, 1, 1),
            )
        uow.commit()
    move_clock(runtime, book.id, date(2026, 3, 31))
    # Each subscription started in January owes January, February and March.
    expected = 3 * count
    exe = Path(sys.executable).with_name("activebilling")
    command = [str(exe), "billing-run", "--book", str(book.id), "--as-of", "2026-03-31"]
    env = {**os.environ, "DATABASE_URL": database_url}
    # The killed run's backend finishes a COMMIT it already received; its name lets the
    # test wait for it to go before counting what the run left behind.
    killed_name = f"killed-run-{book.id}"
    proc = subprocess.Popen(
        [*command, "--batch-size", "5"],
        env={**env, "PGAPPNAME": killed_name},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            with runtime.connection() as conn:
                made = conn.execute(
                    "select count(*) from invoices where book_id = %s", (book.id,)
                ).fetchone()
            if made is not None and made[0] >= 30:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    gone_by = time.monotonic() + 60
    while time.monotonic() < gone_by:
        with runtime.connection() as conn:
            left = conn.execute(
                "select count(*) from pg_stat_activity where application_name = %s",
                (killed_name,),
            ).fetchone()
        if left is not None and left[0] == 0:
            break
        time.sleep(0.05)
    with runtime.connection() as conn:
        partial = conn.execute(
            "select count(*) from invoices where book_id = %s", (book.id,)
        ).fetchone()
        runs = conn.execute(
            "select status from billing_runs where book_id = %s", (book.id,)
        ).fetchall()
    assert partial is not None and 0 < partial[0] < expected
    assert runs == [("running",)]  # it never finished
    done = subprocess.run(
        [*command, "--format", "json"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f'"invoices_created": {expected - partial[0]}' in done.stdout
    assert "subscriptions" in done.stderr  # the progress line
    with runtime.connection() as conn:
        per_period = conn.execute(
            "select subscription_id, subscription_period_start, count(*) from invoices"
            " where book_id = %s group by 1, 2",
            (book.id,),
        ).fetchall()
        numbers = [
            r[0]
            for r in conn.execute(
                "select number from invoices where book_id = %s order by number", (book.id,)
            ).fetchall()
        ]
        advanced = conn.execute(
            "select count(*) from subscriptions where book_id = %s and periods_billed = 3",
            (book.id,),
        ).fetchone()
    assert len(per_period) == expected and {r[2] for r in per_period} == {1}
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, expected + 1)]
    assert advanced == (count,)
    runtime.seal_all(wait=True)
    with runtime.connection() as conn:
        assert verify_book(conn, book.id) == []


def test_a_period_in_a_closed_month_is_invoiced_in_the_first_open_one(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", date(2026, 2, 15))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "31.00")
        late = create_subscription(
            uow.conn,
            book.id,
            SubscriptionSpec(customer(uow.conn, book.id), [ItemSpec(price)], date(2026, 1, 10)),
            date(2026, 2, 15),
        )
        create_subscription(
            uow.conn,
            book.id,
            SubscriptionSpec(customer(uow.conn, book.id), [ItemSpec(price)], date(2026, 2, 1)),
            date(2026, 2, 15),
        )
        set_period_status(uow.conn, book.id, "2026-01", PeriodStatus.CLOSED)
        uow.commit()
    run = bill(runtime, book.id, date(2026, 2, 15))
    assert (run.status, run.invoices_created, run.failures) == ("completed", 3, ())
    invoices = invoices_of(runtime, book.id)
    # January's period is issued (and posted) on Feb 1 and keeps its service period.
    assert [
        (i.number, i.subscription_id == late.id, i.issue_date, i.due_date, line_amounts(i))
        for i in invoices
    ] == [
        (
            "INV-2026-000001",
            True,
            date(2026, 2, 1),
            date(2026, 3, 3),
            [(D("31.00"), date(2026, 1, 10), date(2026, 2, 10))],
        ),
        (
            "INV-2026-000002",
            False,
            date(2026, 2, 1),
            date(2026, 3, 3),
            [(D("31.00"), date(2026, 2, 1), date(2026, 3, 1))],
        ),
        (
            "INV-2026-000003",
            True,
            date(2026, 2, 10),
            date(2026, 3, 12),
            [(D("31.00"), date(2026, 2, 10), date(2026, 3, 10))],
        ),
    ]
    assert balances(runtime, book.id, date(2026, 1, 31)) == {}
    assert balances(runtime, book.id, date(2026, 2, 1)) == {
        "Assets:Receivable:Trade": D("62.00"),
        "Liabilities:Deferred-Revenue": D("-62.00"),
    }
    assert balances(runtime, book.id, date(2026, 2, 10)) == {
        "Assets:Receivable:Trade": D("93.00"),
        "Liabilities:Deferred-Revenue": D("-93.00"),
    }


def test_a_subscription_that_fails_is_reported_and_the_others_are_billed(
    runtime: Runtime, owner_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "USD", date(2026, 4, 1))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "10.00")
        subs = [
            create_subscription(
                uow.conn,
                book.id,
                SubscriptionSpec(customer(uow.conn, book.id), [ItemSpec(price)]),
                date(2026, 4, 1),
            ).id
            for _ in range(3)
        ]
        uow.commit()
    # Whatever breaks one subscription's invoice (a fault injected here) must not stop
    # the run: the database refuses the second subscription's invoice.
    owner_conn.execute(
        "create function ab_test_refuse() returns trigger language plpgsql as $$ begin"
        f" if new.subscription_id = '{subs[1]}' then raise exception 'refused for the test';"
        " end if; return new; end $$"
    )
    owner_conn.execute(
        "create trigger ab_test_refuse before insert on invoices"
        " for each row execute function ab_test_refuse()"
    )
    run = bill(runtime, book.id, date(2026, 4, 1))
    assert (run.status, run.invoices_created) == ("completed", 2)
    assert run.failures == (billing_runs.Failure(subs[1], "refused for the test"),)
    with runtime.connection() as conn:
        assert billing_runs.get_run(conn, book.id, str(run.id)).failures == run.failures
        # Nothing of the failed subscription was written; the others are whole.
        assert conn.execute(
            "select count(*) from journal_entries where book_id = %s", (book.id,)
        ).fetchone() == (2,)
        assert conn.execute(
            "select next_period_start, periods_billed from subscriptions"
            " where book_id = %s and id = %s",
            (book.id, subs[1]),
        ).fetchone() == (date(2026, 4, 1), 0)
    invoices = invoices_of(runtime, book.id)
    assert [(i.number, i.subscription_id) for i in invoices] == [
        ("INV-2026-000001", min(subs[0], subs[2], key=str)),
        ("INV-2026-000002", max(subs[0], subs[2], key=str)),
    ]
    owner_conn.execute("drop trigger ab_test_refuse on invoices")
    again = bill(runtime, book.id, date(2026, 4, 1))
    assert (again.invoices_created, again.failures) == (1, ())
    assert invoices_of(runtime, book.id)[-1].number == "INV-2026-000003"
    assert balances(runtime, book.id, date(2026, 4, 1)) == {
        "Assets:Receivable:Trade": D("30.00"),
        "Liabilities:Deferred-Revenue": D("-30.00"),
    }


class _WorkerDied(BaseException):
    """The worker stops dead after a batch (as a SIGKILL would): nothing marks the run."""


def test_a_run_whose_worker_died_reads_as_interrupted_and_the_next_run_resumes_it(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", date(2026, 4, 1))
    with unit_of_work(runtime.connection) as uow:
        price = plan_price(uow.conn, book.id, "10.00")
        for _ in range(12):
            create_subscription(
                uow.conn,
                book.id,
                SubscriptionSpec(customer(uow.conn, book.id), [ItemSpec(price)]),
                date(2026, 4, 1),
            )
        uow.commit()

    def die_after_a_batch(done: int, total: int, invoices: int) -> None:
        if done:
            raise _WorkerDied

    with pytest.raises(_WorkerDied):
        billing_runs.run_billing(
            runtime.connection,
            book.id,
            date(2026, 4, 1),
            date(2026, 4, 1),
            batch_size=5,
            progress=die_after_a_batch,
        )
    with runtime.connection() as conn:
        [(run_id,)] = conn.execute(
            "select id from billing_runs where book_id = %s", (book.id,)
        ).fetchall()
        alive = billing_runs.get_run(conn, book.id, str(run_id))
        assert (alive.status, alive.invoices_created) == ("running", 5)
        # The lease runs out without a heartbeat: the worker is taken for dead.
        conn.execute(
            "update billing_runs set lease_until = now() - interval '1 second'"
            " where book_id = %s and id = %s",
            (book.id, run_id),
        )
        conn.commit()
        assert billing_runs.get_run(conn, book.id, str(run_id)).status == "interrupted"
    # The next run, here a day later, takes it over and finishes its work.
    move_clock(runtime, book.id, date(2026, 4, 2))
    resumed = bill(runtime, book.id, date(2026, 4, 2))
    assert (resumed.id, resumed.as_of, resumed.status, resumed.invoices_created) == (
        run_id,
        date(2026, 4, 2),
        "completed",
        12,
    )
    assert [i.number for i in invoices_of(runtime, book.id)] == [
        f"INV-2026-{n:06d}" for n in range(1, 13)
    ]
    # A finished run is not taken over again: the next one is new and finds nothing to do.
    after = bill(runtime, book.id, date(2026, 4, 2))
    assert (after.id != run_id, after.invoices_created) == (True, 0)


def test_an_entry_for_a_closed_month_goes_to_the_first_day_of_the_first_open_one() -> None:
    closed = {"2025-12", "2026-01"}
    assert first_open_day(date(2025, 12, 10), closed) == date(2026, 2, 1)
    assert first_open_day(date(2026, 1, 31), closed) == date(2026, 2, 1)
    assert first_open_day(date(2026, 2, 10), closed) == date(2026, 2, 10)
    assert first_open_day(date(2025, 11, 30), closed) == date(2025, 11, 30)
