"""Invoicing reads the rated CDRs not yet invoiced from `cdr_billing_queue` (migration
0049), not every CDR the subscriber ever had: the read follows what is unbilled."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

from adapters.runtime import Runtime
from billing.postgres.telecom_billing import (
    UNBILLED,
    mark_billed,
    rate_plan_items,
    unbilled_cdrs,
)
from tests.billing.test_subscriptions import bill, invoices_of, move_clock
from tests.billing.test_telecom_subscriptions import (
    FEB15,
    JAN15,
    MAR15,
    SUBSCRIBER,
    cdr,
    client,  # noqa: F401 (fixture)
    rate,
    send_cdrs,
    telecom_subscription,
)
from tests.conftest import make_book

APR15 = date(2026, 4, 15)


def month_of_cdrs(tag: str, first: date, count: int) -> list[dict[str, Any]]:
    return [
        cdr(
            f"{tag}-{i:04d}", f"{first + timedelta(days=i % 27)}T{8 + i % 10:02d}:00:00+00:00", "60"
        )
        for i in range(count)
    ]


def rows_read(conn: psycopg.Connection, query: str, params: Any) -> dict[str, int]:
    """Rows each table's scans returned running `query` (EXPLAIN ANALYZE), per table."""
    row = conn.execute(f"explain (analyze, format json) {query}", params).fetchone()
    assert row is not None
    read: dict[str, int] = {}

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            name = node["Relation Name"]
            read[name] = read.get(name, 0) + node["Actual Rows"] * node["Actual Loops"]
        for child in node.get("Plans", []):
            walk(child)

    walk(row[0][0]["Plan"])
    return read


def queued(conn: psycopg.Connection, book_id: uuid.UUID) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "select cdr_id from cdr_billing_queue where book_id = %s order by cdr_id", (book_id,)
        ).fetchall()
    ]


def test_invoicing_after_billed_months_reads_only_the_unbilled_cdrs(
    runtime: Runtime,
    client: Any,  # noqa: F811
    owner_conn: psycopg.Connection,
) -> None:
    book = make_book(runtime, "GBP", JAN15)
    sub = telecom_subscription(runtime, client, book)
    bill(runtime, book.id, JAN15)
    for tag, first, through in (("jan", JAN15, FEB15), ("feb", FEB15, MAR15)):
        send_cdrs(client, book, month_of_cdrs(tag, first, 300))
        rate(client, book, through)
        move_clock(runtime, book.id, through)
        bill(runtime, book.id, through)
    send_cdrs(client, book, month_of_cdrs("mar", MAR15, 40))
    rate(client, book, APR15)
    with runtime.connection() as conn:
        assert len(queued(conn, book.id)) == 40  # the billed 600 left the queue
        owner_conn.execute("analyze cdrs, cdr_ratings, cdr_billing_queue")
        items = list(rate_plan_items(conn, book.id, [uuid.UUID(sub["id"])]).values())
        found = unbilled_cdrs(conn, book.id, items, APR15)
        assert [len(v) for v in found.values()] == [40]
        # At this size scanning all 640 ratings is the cheaper plan; what counts is
        # what the keyed path reads, the plan of a book with years of CDRs (see
        # benchmarks.telecom_invoicing).
        for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
            conn.execute(f"set local {setting} = off")
        before = datetime.combine(APR15, time(0), UTC) + timedelta(hours=14)
        read = rows_read(conn, UNBILLED, (book.id, [SUBSCRIBER], before))
        # 40 CDRs and their 40 ratings, not the 640 the subscriber has (the anti-join
        # against cdr_invoices read all of them).
        assert (read["cdrs"], read["cdr_ratings"]) == (40, 40)
    move_clock(runtime, book.id, APR15)
    bill(runtime, book.id, APR15)
    april = invoices_of(runtime, book.id)[-1]
    assert sum(x.quantity for x in april.lines if x.kind == "usage") == 40
    with runtime.connection() as conn:
        assert queued(conn, book.id) == []


def test_two_invoicings_cannot_bill_a_cdr_twice(
    runtime: Runtime,
    client: Any,  # noqa: F811
) -> None:
    book = make_book(runtime, "GBP", JAN15)
    sub = telecom_subscription(runtime, client, book)
    send_cdrs(client, book, [cdr("x1", "2026-01-20T12:00:00+00:00", "60")])
    rate(client, book, FEB15)
    with runtime.connection() as a, runtime.connection() as b:
        items = list(rate_plan_items(a, book.id, [uuid.UUID(sub["id"])]).values())
        for conn in (a, b):  # both see x1 unbilled before either commits
            assert [
                c.id for cs in unbilled_cdrs(conn, book.id, items, FEB15).values() for c in cs
            ] == ["x1"]
        mark_billed(a, book.id, {uuid.uuid4(): ["x1"]})
        failed: list[BaseException] = []

        def second() -> None:
            try:
                mark_billed(b, book.id, {uuid.uuid4(): ["x1"]})
            except BaseException as e:
                failed.append(e)

        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # waits on a's link of x1
        a.commit()
        waiter.join(10)
        assert len(failed) == 1 and isinstance(failed[0], psycopg.errors.UniqueViolation)
        b.rollback()
        assert a.execute(
            "select count(*) from cdr_invoices where book_id = %s", (book.id,)
        ).fetchone() == (1,)
        assert queued(a, book.id) == []
        assert unbilled_cdrs(b, book.id, items, FEB15) == {}


def test_a_late_cdr_waits_in_the_queue_for_the_next_invoice(
    runtime: Runtime,
    client: Any,  # noqa: F811
) -> None:
    book = make_book(runtime, "GBP", JAN15)
    telecom_subscription(runtime, client, book)
    bill(runtime, book.id, JAN15)
    send_cdrs(client, book, [cdr("on-time", "2026-02-01T12:00:00+00:00", "60")])
    rate(client, book, FEB15)
    move_clock(runtime, book.id, FEB15)
    bill(runtime, book.id, FEB15)
    send_cdrs(client, book, [cdr("late", "2026-02-02T12:00:00+00:00", "60")])
    with runtime.connection() as conn:
        assert queued(conn, book.id) == []  # not rated yet
    rate(client, book, MAR15)
    with runtime.connection() as conn:
        assert queued(conn, book.id) == ["late"]
    move_clock(runtime, book.id, MAR15)
    bill(runtime, book.id, MAR15)
    march = invoices_of(runtime, book.id)[-1]
    assert [x.service_start for x in march.lines if x.kind == "usage"] == [date(2026, 2, 2)]
    with runtime.connection() as conn:
        assert queued(conn, book.id) == []
