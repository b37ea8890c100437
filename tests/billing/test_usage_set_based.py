"""The billing run reads usage set-based (`prefetch_arrears`: one aggregation per meter
over the whole batch's windows, one statement for the late periods): on a mixed book —
meters of every aggregation, filters and group-by, a price without a meter, a minimum
commitment, free units, a subscription started mid-period, one canceled at period end
(its final usage invoice), late events for a billed period — it bills exactly what the
per-subscription reads bill, and `aggregate_many` answers each window as `aggregate`."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from psycopg import sql

from adapters.runtime import Runtime
from billing.postgres import billing_runs
from billing.postgres import usage_billing as usage_billing_store
from billing.postgres.subscriptions import cancel_subscription
from billing.postgres.usage import aggregate, aggregate_many, create_meter, list_meters
from billing.postgres.usage_billing import Prefetched
from billing.usage import Aggregation, MeterSpec
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_subscriptions import balances, bill, invoices_of, move_clock, plan_price
from tests.billing.test_usage_billing import event, send, subscribe, usage_price
from tests.conftest import BookFixture, make_book

D = Decimal
JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)
MAR = date(2026, 3, 1)


def _mixed_book(runtime: Runtime) -> tuple[BookFixture, dict[str, str]]:
    """The book, and its customers by label."""
    book = make_book(runtime, "USD", JAN)
    with unit_of_work(runtime.connection) as uow:
        c = uow.conn
        create_meter(c, book.id, "gb", "sum", None, {"env": ["prod", "stage"]}, ["region"])
        create_meter(c, book.id, "peak", "max")
        create_meter(c, book.id, "seats", "unique_count", "user")
        create_meter(c, book.id, "gauge", "last")
        create_meter(c, book.id, "hits", "count")
        calls = usage_price(c, book.id, "graduated")  # api_calls: no meter, the price's sum
        gb = usage_price(c, book.id, "per_unit", metric="gb", unit_amount=D("0.25"))
        peak = usage_price(c, book.id, "volume", metric="peak")
        seats = usage_price(
            c, book.id, "per_unit", metric="seats", unit_amount=D("7"), minimum_amount=D("30")
        )
        gauge = usage_price(
            c, book.id, "package", metric="gauge", unit_amount=D("5"), package_size=10
        )
        hits = usage_price(
            c, book.id, "per_unit", metric="hits", unit_amount=D("0.01"), free_units=D(3)
        )
        base = plan_price(c, book.id, "20.00")
        uow.commit()
    who = {
        "all": subscribe(runtime, book, [base, calls, gb, peak, seats, gauge, hits], "all"),
        "some": subscribe(runtime, book, [calls, gb, hits], "some"),
        "quiet": subscribe(runtime, book, [peak, gauge, seats], "quiet"),
        "leaving": subscribe(runtime, book, [base, calls, gb], "leaving"),
        "late_start": subscribe(runtime, book, [calls, seats], "late_start", date(2026, 1, 15)),
    }
    bill(runtime, book.id, JAN)
    move_clock(runtime, book.id, date(2026, 1, 20))
    with unit_of_work(runtime.connection) as uow:
        sub = uow.conn.execute(
            "select id from subscriptions where book_id = %s and customer_id = %s",
            (book.id, who["leaving"]),
        ).fetchone()
        assert sub is not None
        cancel_subscription(uow.conn, book.id, str(sub[0]), "period_end", date(2026, 1, 20))
        uow.commit()
    move_clock(runtime, book.id, FEB)
    january = [
        event("a1", "all", "9000", "2026-01-05"),
        event("a2", "all", "6000", "2026-01-31"),
        event("a3", "all", "10", "2026-01-03", metric="gb", region="us", env="prod"),
        event("a4", "all", "4", "2026-01-04", metric="gb", region="eu", env="stage"),
        event("a5", "all", "99", "2026-01-04", metric="gb", region="eu", env="test"),
        event("a6", "all", "3", "2026-01-06", metric="gb", env="prod"),  # no region
        event("a7", "all", "1500", "2026-01-07", metric="peak"),
        event("a8", "all", "12000", "2026-01-08", metric="peak"),
        event("a9", "all", "1", "2026-01-02", metric="seats", user="ann"),
        event("a10", "all", "1", "2026-01-03", metric="seats", user="bob"),
        event("a11", "all", "1", "2026-01-09", metric="seats", user="ann"),
        event("a12", "all", "1", "2026-01-10", metric="seats", user="cy"),
        event("a13", "all", "1", "2026-01-10", metric="seats", user="dee"),
        event("a14", "all", "1", "2026-01-11", metric="seats", user="eve"),
        event("a15", "all", "42", "2026-01-20", metric="gauge"),
        event("a16", "all", "17", "2026-01-25", metric="gauge"),  # same moment: by id
        event("a17", "all", "23", "2026-01-25", metric="gauge"),
        event("a18", "all", "5", "2026-01-02", metric="hits"),
        event("a19", "all", "5", "2026-01-03", metric="hits"),
        event("s1", "some", "800", "2026-01-15"),
        event("s2", "some", "7.5", "2026-01-16", metric="gb", region="ap", env="prod"),
        *(event(f"h{n}", "some", "1", "2026-01-17", metric="hits") for n in range(2)),
        event("l1", "leaving", "2500", "2026-01-12"),
        event("l2", "leaving", "700", "2026-01-25"),  # before the period's end: billed
        event("l3", "leaving", "2", "2026-01-13", metric="gb", region="eu", env="prod"),
        event("t1", "late_start", "1200", "2026-01-10"),  # before it started: not billed
        event("t2", "late_start", "300", "2026-01-20"),
        event("t3", "late_start", "1", "2026-01-21", metric="seats", user="zed"),
    ]
    send(runtime, book, january)
    bill(runtime, book.id, FEB)
    # Late January usage once January was billed, and February's.
    move_clock(runtime, book.id, date(2026, 2, 10))
    send(
        runtime,
        book,
        [
            event("x1", "all", "2000", "2026-01-30"),
            event("x2", "all", "6", "2026-01-30", metric="gb", region="eu", env="prod"),
            event("x3", "all", "1", "2026-01-30", metric="seats", user="fay"),
            event("x4", "some", "1", "2026-01-31", metric="hits"),
            event("x5", "late_start", "20000", "2026-01-29"),
            event("f1", "all", "100", "2026-02-03"),
            event("f2", "all", "9", "2026-02-04", metric="gauge"),
            event("f3", "some", "3", "2026-02-05", metric="gb", region="ap", env="stage"),
        ],
    )
    move_clock(runtime, book.id, MAR)
    bill(runtime, book.id, MAR)
    return book, who


def _billed(runtime: Runtime, book: BookFixture, who: dict[str, str]) -> dict[str, Any]:
    """The book's invoices, usage records and balances, with its own ids made labels."""
    label = {v: k for k, v in who.items()}
    invoices = sorted(
        (
            label[str(i.customer_id)],
            i.issue_date,
            i.subtotal,
            i.tax_total,
            i.total,
            # Lines follow item ids (random in each book): compared as sorted.
            tuple(
                sorted(
                    (x.kind, x.description, x.quantity, x.unit_amount, x.amount, x.service_end)
                    for x in i.lines
                )
            ),
        )
        for i in invoices_of(runtime, book.id)
    )
    with runtime.connection() as conn:
        records = sorted(
            (label[str(r[0])], r[1], r[2], r[3], str(r[4]), r[5], r[6], r[7])
            for r in conn.execute(
                "select s.customer_id, p.metric, u.period_start, u.period_end, u.group_key,"
                " u.quantity, u.amount, u.invoice_id is null"
                " from usage_billings u join subscriptions s on s.book_id = u.book_id"
                " and s.id = u.subscription_id join prices p on p.book_id = u.book_id"
                " and p.id = u.price_id where u.book_id = %s",
                (book.id,),
            )
        )
    return {"invoices": invoices, "records": records, "balances": balances(runtime, book.id, MAR)}


def test_the_run_bills_a_mixed_book_as_the_per_subscription_reads_do(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[uuid.UUID, str]] = []
    one_by_one = usage_billing_store.aggregate

    def counted(conn: Any, book_id: uuid.UUID, customer: uuid.UUID, *rest: Any) -> Any:
        reads.append((book_id, rest[0].metric))
        return one_by_one(conn, book_id, customer, *rest)

    monkeypatch.setattr(usage_billing_store, "aggregate", counted)
    set_based, set_based_who = _mixed_book(runtime)
    # Only the final usage invoice of the canceled subscription reads window by window.
    assert sorted(m for b, m in reads if b == set_based.id) == ["api_calls", "gb"]

    monkeypatch.setattr(billing_runs, "prefetch_arrears", lambda *_: Prefetched({}, {}))
    per_subscription, per_subscription_who = _mixed_book(runtime)
    assert len([b for b, _ in reads if b == per_subscription.id]) > 20

    got = _billed(runtime, set_based, set_based_who)
    assert got == _billed(runtime, per_subscription, per_subscription_who)
    # The mix is what it says: late lines, a shortfall, group lines, a final invoice.
    lines = [line for invoice in got["invoices"] for line in invoice[5]]
    # x1-x3; x4 stays within the free units, x5 arrived before its period was billed.
    assert sum("late usage" in line[1] for line in lines) == 3
    assert any("minimum commitment" in line[1] for line in lines)
    assert any("region=ap" in line[1] for line in lines)
    assert [i[1] for i in got["invoices"] if i[0] == "leaving"] == [JAN, FEB]
    assert got["balances"]["Income:Usage"] < 0


def test_aggregate_many_answers_each_window_as_aggregate(runtime: Runtime) -> None:
    book, who = _mixed_book(runtime)
    nobody = uuid.uuid4()
    windows = [
        (customer, start, end)
        for customer in [*(uuid.UUID(c) for c in who.values()), nobody]
        for start, end in [
            (JAN, FEB),
            (FEB, MAR),
            (date(2026, 1, 4), date(2026, 1, 25)),
            (date(2026, 1, 25), date(2026, 1, 26)),
            (date(2025, 12, 1), JAN),
        ]
    ]
    with runtime.connection() as conn:
        meters = [m.spec for m in list_meters(conn, book.id)]
        meters.append(MeterSpec("api_calls", Aggregation.SUM))  # a price's, without a meter
        assert {m.aggregation.value for m in meters} == {
            "sum",
            "max",
            "unique_count",
            "last",
            "count",
        }
        for meter in meters:
            one_by_one = [aggregate(conn, book.id, c, meter, s, e) for c, s, e in windows]
            assert aggregate_many(conn, book.id, meter, windows) == one_by_one
            assert any(found and found[0][1] for found in one_by_one)  # not all zero


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, index or '') of every scan of usage_events in an EXPLAIN tree."""
    found = []
    if plan.get("Relation Name") == "usage_events":
        found.append((plan["Node Type"], plan.get("Index Name", "")))
    for child in plan.get("Plans", []):
        found.extend(_scans(child))
    return found


@pytest.mark.parametrize("statistics", ["none", "analyzed"])
def test_aggregate_many_reads_each_window_by_index_without_statistics(
    runtime: Runtime, owner_conn: Any, statistics: str
) -> None:
    """A long-lived server on a fresh, growing book plans the batch's aggregation before
    any ANALYZE of usage_events: each window must stay an index range scan (a join of
    the windows to the events was planned as a hash over all of them, once per batch).
    The statistics are dropped in a transaction that is rolled back."""
    from billing.postgres.usage import aggregate_many_query

    book = make_book(runtime, "USD", JAN)
    customers = [uuid.uuid4() for _ in range(400)]
    with owner_conn.transaction(force_rollback=True):
        owner_conn.execute(
            "update pg_class set reltuples = -1, relpages = 0 where oid = 'usage_events'::regclass"
        )
        owner_conn.execute("delete from pg_statistic where starelid = 'usage_events'::regclass")
        owner_conn.execute(
            "insert into usage_events (book_id, id, customer_id, metric, quantity, occurred_at)"
            " select %s, 'p' || c.n || '-' || e, c.customer, 'api_calls', 1 + e %% 7,"
            "  '2026-01-01'::timestamptz + (e * 2311 %% (30 * 86400)) * interval '1 second'"
            " from unnest(%s::uuid[]) with ordinality as c(customer, n),"
            "  generate_series(0, 199) as e",
            (book.id, customers),
        )
        if statistics == "analyzed":
            owner_conn.execute("analyze usage_events")
        query, params = aggregate_many_query(
            book.id, MeterSpec("api_calls", Aggregation.SUM), [(c, JAN, FEB) for c in customers]
        )
        plan = owner_conn.execute(
            sql.SQL("explain (format json) {}").format(query), params
        ).fetchone()[0][0]["Plan"]
        scans = _scans(plan)
        assert scans, plan
        assert all(
            kind in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Bitmap Index Scan")
            for kind, _ in scans
        ), scans
        # And the answer is the events' sum: 200 events of 1..7 per customer.
        got = owner_conn.execute(query, params).fetchall()
        assert len(got) == len(customers)
        assert {row[-1] for row in got} == {D(sum(1 + e % 7 for e in range(200)))}
