"""CDR import and rating runs on real PostgreSQL: dedupe by record id, broken
rows reported with their line while the rest is stored, summarized entries
with exact debits and credits (postpaid to Unbilled, prepaid from the wallet),
allowances continued across runs, and verify's tie to the rated CDRs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.errors import DocumentState
from billing.postgres import telecom as store
from billing.postgres import wallets as wallet_store
from billing.telecom import RatingError
from billing.wallets import USAGE, wallet_account
from ledger.errors import BalanceLimitExceeded, NotFound
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import new_customer
from tests.conftest import BookFixture
from tests.unit.test_telecom_rating import plan_body

D = Decimal


def in_tx(runtime: Runtime, work: Callable[[psycopg.Connection], Any]) -> Any:
    with unit_of_work(runtime.connection) as uow:
        answer = work(uow.conn)
        uow.commit()
    return answer


def row(cid: str, sub: str, start: str, seconds: str, to: str = "+447700900123") -> dict[str, Any]:
    return {
        "id": cid,
        "subscriber": sub,
        "event_type": "voice",
        "start": start,
        "duration_seconds": seconds,
        "destination": to,
        "roaming": "false",
    }


def setup(runtime: Runtime, book: BookFixture) -> tuple[Any, Any]:
    def work(c: psycopg.Connection) -> tuple[Any, Any]:
        post = new_customer(c, book.id, tax_rate="0", currency="GBP")
        pre = new_customer(c, book.id, tax_rate="0", currency="GBP")
        store.create_rate_plan(
            c,
            book.id,
            plan_body(
                allowances=[{"event_type": "voice", "quantity": "300", "zones": ["uk", "london"]}]
            ),
        )
        wallet = wallet_store.create_wallet(c, book.id, str(pre.id), "GBP")
        wallet_store.top_up(c, book.id, str(wallet.id), D("5.00"), date(2026, 3, 1))
        store.create_subscriber(c, book.id, "+447700900001", str(post.id), "Mobile S")
        store.create_subscriber(
            c, book.id, "+447700900002", str(pre.id), "Mobile S", str(wallet.id)
        )
        return post, wallet

    return in_tx(runtime, work)  # type: ignore[no-any-return]


def postings_of(c: psycopg.Connection, book: BookFixture, run: Any) -> list[tuple[Any, ...]]:
    return c.execute(
        "select a.name, p.amount, p.customer_id, e.effective_date from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id"
        " where p.book_id = %s and p.dimensions->>'via' = %s order by e.effective_date, a.name",
        (book.id, f"cdr_rating:{run.id}"),
    ).fetchall()


def test_import_rate_and_post_summaries(runtime: Runtime, book: BookFixture) -> None:
    post, wallet = setup(runtime, book)
    a, b = "+447700900001", "+447700900002"
    rows = [
        (2, row("1", a, "2026-03-02T10:00:00+00:00", "120")),  # in allowance
        (3, row("2", a, "2026-03-02T11:00:00+00:00", "240")),  # 180 free, 60 s at 0.60
        (4, {**row("3", a, "2026-03-02T12:00:00", "60")}),  # no offset: broken
        (5, row("4", a, "2026-03-03T10:00:00+00:00", "61")),  # 120 s billed: 1.20
        (6, row("5", b, "2026-03-02T10:00:00+00:00", "61", "+33123456789")),  # 1.42 prepaid
        (7, row("6", "+449999", "2026-03-02T10:00:00+00:00", "60")),  # unknown subscriber
        (8, row("1", a, "2026-03-02T10:00:00+00:00", "120")),  # duplicate in the file
    ]
    first = in_tx(runtime, lambda c: store.import_cdrs(c, book.id, rows))
    assert first.accepted == 4
    assert first.duplicates == ["1"]
    assert [(r["line"], r["id"]) for r in first.rejected] == [(4, "3"), (7, "6")]
    assert "offset" in first.rejected[0]["reason"]
    again = in_tx(
        runtime,
        lambda c: store.import_cdrs(
            c,
            book.id,
            [
                (2, row("1", a, "2026-03-02T10:00:00+00:00", "120")),
                (3, row("2", a, "2026-03-02T11:00:00+00:00", "999")),
            ],
        ),
    )
    assert (again.accepted, again.duplicates) == (0, ["1"])
    assert [(r["id"], r["reason"]) for r in again.rejected] == [("2", "conflict")]

    run = in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 3, 3)))
    assert (run.rated, run.unrateable) == (3, 0)  # the 3rd of March is not yet through
    assert run.amounts == {"GBP": D("2.02")}
    with unit_of_work(runtime.connection) as uow:
        got = postings_of(uow.conn, book, run)
    w = wallet_account(wallet.id)
    cust = str(post.id)
    assert sorted(got) == sorted(
        [
            ("Assets:Receivable:Unbilled", D("0.60"), cust, date(2026, 3, 2)),
            (USAGE, D("-0.60"), cust, date(2026, 3, 2)),
            (w, D("1.42"), str(wallet.customer_id), date(2026, 3, 2)),
            (USAGE, D("-1.42"), str(wallet.customer_id), date(2026, 3, 2)),
        ]
    )
    # The next run continues the month's allowance (already used up) and rates the 3rd.
    later = in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 4, 1)))
    assert (later.rated, later.amounts) == (1, {"GBP": D("1.20")})
    with unit_of_work(runtime.connection) as uow:
        assert [(n, amt) for n, amt, _, _ in postings_of(uow.conn, book, later)] == [
            ("Assets:Receivable:Unbilled", D("1.20")),
            (USAGE, D("-1.20")),
        ]
        assert verify_everything(uow.conn, book.id) == []
        detail = store.usage_detail(uow.conn, book.id, a)
        assert [(d["id"], d["billed_quantity"], d["included"], d["amount"]) for d in detail] == [
            ("1", D(120), D(120), D("0.00")),
            ("2", D(240), D(180), D("0.60")),
            ("4", D(120), D(0), D("1.20")),
        ]
        wallet_now = wallet_store.get_wallet(uow.conn, book.id, str(wallet.id))
        assert wallet_now.balance == D("3.58")
    nothing = in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 4, 1)))
    assert (nothing.rated, nothing.entries) == (0, 0)


def test_verify_finds_a_rated_cdr_that_does_not_tie(
    runtime: Runtime, book: BookFixture, owner_conn: psycopg.Connection
) -> None:
    setup(runtime, book)
    in_tx(
        runtime,
        lambda c: store.import_cdrs(
            c, book.id, [(2, row("x", "+447700900001", "2026-03-02T10:00:00+00:00", "600"))]
        ),
    )
    in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 3, 3)))
    owner_conn.execute("update cdr_ratings set amount = amount + 1 where book_id = %s", (book.id,))
    with unit_of_work(runtime.connection) as uow:
        found = verify_everything(uow.conn, book.id)
    # The postpaid CDR's amount is also what Unbilled holds for it until invoiced.
    assert [d.check for d in found] == ["cdr_rating_tie", "usage_unbilled"]


def test_bad_plans_subscribers_and_batches_write_nothing(
    runtime: Runtime, book: BookFixture
) -> None:
    setup(runtime, book)

    def count(c: psycopg.Connection) -> Any:
        return c.execute(
            "select (select count(*) from rate_plans where book_id = %(b)s),"
            " (select count(*) from telecom_subscribers where book_id = %(b)s),"
            " (select count(*) from cdrs where book_id = %(b)s)",
            {"b": book.id},
        ).fetchone()

    before = in_tx(runtime, count)
    customer = in_tx(
        runtime,
        lambda c: c.execute(
            "select customer_id from telecom_subscribers where book_id = %s limit 1", (book.id,)
        ).fetchone()[0],
    )
    attempts: list[tuple[type[Exception], Callable[[psycopg.Connection], Any]]] = [
        (DocumentState, lambda c: store.create_rate_plan(c, book.id, plan_body())),
        (RatingError, lambda c: store.create_rate_plan(c, book.id, plan_body(currency="??"))),
        (NotFound, lambda c: store.create_subscriber(c, book.id, "+1", str(customer), "Nope")),
        (
            DocumentState,
            lambda c: store.create_subscriber(
                c, book.id, "+447700900001", str(customer), "Mobile S"
            ),
        ),
        (
            Exception,
            lambda c: store.import_cdrs(
                c,
                book.id,
                [
                    (i, row(str(i), "+447700900001", "2026-03-02T10:00:00+00:00", "1"))
                    for i in range(10_001)
                ],
            ),
        ),
    ]
    for error, attempt in attempts:
        with pytest.raises(error):
            in_tx(runtime, attempt)
    assert in_tx(runtime, count) == before


def test_a_prepaid_wallet_short_of_its_rated_usage_fails_the_run_and_writes_nothing(
    runtime: Runtime, book: BookFixture
) -> None:
    _, wallet = setup(runtime, book)  # the wallet holds 5.00
    calls = [(2, row("big", "+447700900002", "2026-03-02T10:00:00+00:00", "600", "+33123456789"))]
    in_tx(runtime, lambda c: store.import_cdrs(c, book.id, calls))  # 10 min at 1.20 + 0.10

    def count(c: psycopg.Connection) -> Any:
        return c.execute(
            "select (select count(*) from cdr_rating_runs where book_id = %(b)s),"
            " (select count(*) from cdr_ratings where book_id = %(b)s),"
            " (select count(*) from journal_entries where book_id = %(b)s)",
            {"b": book.id},
        ).fetchone()

    before = in_tx(runtime, count)
    with pytest.raises(BalanceLimitExceeded):
        in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 4, 1)))
    assert in_tx(runtime, count) == before
    assert in_tx(
        runtime, lambda c: wallet_store.get_wallet(c, book.id, str(wallet.id))
    ).balance == D("5.00")


def test_a_runs_planner_settings_end_with_its_read(runtime: Runtime, book: BookFixture) -> None:
    """The run's read is planned set-based (ledger.postgres.planner); the postings and
    whatever the caller does next in the transaction are planned as usual."""
    setup(runtime, book)
    rows = [(2, row("1", "+447700900001", "2026-03-02T10:00:00+00:00", "120"))]
    in_tx(runtime, lambda c: store.import_cdrs(c, book.id, rows))
    names = ["work_mem", "cursor_tuple_fraction", "enable_nestloop", "jit"]

    def settings(c: psycopg.Connection) -> list[str]:
        return [c.execute("select current_setting(%s)", (n,)).fetchone()[0] for n in names]

    def work(c: psycopg.Connection) -> tuple[list[str], list[str]]:
        before = settings(c)
        assert store.rate_through(c, book.id, date(2026, 4, 1)).rated == 1
        return before, settings(c)

    before, after = in_tx(runtime, work)
    assert after == before
