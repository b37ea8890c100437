"""The rating run (the queue of unrated CDRs, a server-side cursor, binary COPY of the
ratings, summaries from the run's sums) stores exactly what the row-by-row rule gives,
across runs, across the cursor's fetches and in parts side by side, on the mixed sample
of the unit test: allowances exhausted part-way through a call, the plan version
changing mid-month, peak calls ending off-peak; unrateable CDRs keep their reason;
verify ties; a re-run rates nothing; a CDR imported late or during a run is rated by
the next run; a failing part rolls back alone."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.postgres import telecom as store
from billing.wallets import USAGE
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_cdr_rating import in_tx, row, setup
from tests.billing.test_payments import new_customer
from tests.conftest import BookFixture
from tests.unit.test_telecom_batch_rating import SUBSCRIBERS, row_by_row, sample
from tests.unit.test_telecom_rating import plan_body

D = Decimal
COLUMNS = ("zone", "band", "billed_quantity", "included", "amount", "currency")


class Runs:
    """The runs of one rating (one, or one per part) added up."""

    def __init__(self, runs: list[store.RatingRun]) -> None:
        self.runs = runs
        self.rated = sum(r.rated for r in runs)
        self.unrateable = sum(r.unrateable for r in runs)
        self.entries = sum(r.entries for r in runs)
        self.amounts = {"GBP": sum((r.amounts.get("GBP", D(0)) for r in runs), D(0))}


def rate(runtime: Runtime, book: BookFixture, through: date, parts: int) -> Runs:
    if parts == 1:
        return Runs([in_tx(runtime, lambda c: store.rate_through(c, book.id, through))])
    return Runs(store.rate_in_parts(runtime.connection, book.id, through, parts))


# In 4 parts, part 3 holds subscriber 1, part 1 subscribers 2 and 3, parts 0 and 2 none.
@pytest.mark.parametrize("parts", [1, 4])
def test_rating_runs_store_what_the_row_by_row_rule_gives(
    runtime: Runtime, book: BookFixture, monkeypatch: pytest.MonkeyPatch, parts: int
) -> None:
    monkeypatch.setattr(store, "FETCH", 97)  # subscribers span the cursor's fetches
    plans = [
        plan_body(
            allowances=[
                {"event_type": "voice", "quantity": "300", "zones": ["uk", "london"]},
                {"event_type": "data", "quantity": "2500000"},
            ]
        ),
        plan_body(
            effective_from="2026-03-15",
            bands=[
                {"name": "night", "days": [1, 2, 3, 4, 5, 6, 7], "from": "22:00", "to": "06:00"},
                {"name": "day", "days": [1, 2, 3, 4, 5, 6, 7], "from": "06:00", "to": "22:00"},
            ],
            rates=[
                {
                    "event_type": "voice",
                    "band": "night",
                    "unit_amount": "0.07",
                    "increment": "30/6",
                },
                {"event_type": "voice", "unit_amount": "0.90", "increment": "60/1"},
                {"zone": "france", "event_type": "voice", "unit_amount": "1.33"},
                {"event_type": "sms", "unit_amount": "0.04", "setup_amount": "0.01"},
                {"event_type": "data", "unit_amount": "1.10"},
            ],
            allowances=[{"event_type": "voice", "quantity": "600"}],
            roaming_uplift_percent="12.5",
        ),
    ]
    cdrs = [c for c in sample() if c.id != "half"]  # import refuses a fractional call

    def prepare(c: Any) -> list[Any]:
        versions = [store.create_rate_plan(c, book.id, p)[1] for p in plans]
        customer = new_customer(c, book.id, tax_rate="0", currency="GBP")
        for sub in SUBSCRIBERS:
            store.create_subscriber(c, book.id, sub, str(customer.id), "Mobile S")
        return versions

    versions = in_tx(runtime, prepare)
    field = {"voice": "duration_seconds", "sms": "count", "data": "bytes"}
    rows = [
        (
            n,
            {
                "id": c.id,
                "subscriber": c.subscriber,
                "event_type": c.event_type,
                "start": c.start.isoformat(),
                field[c.event_type]: str(c.quantity),
                "destination": c.destination,
                "roaming": c.roaming,
            },
        )
        for n, c in enumerate(cdrs, 1)
    ]
    imported = in_tx(runtime, lambda c: store.import_cdrs(c, book.id, rows))
    assert (imported.accepted, imported.rejected) == (len(cdrs), [])

    # Two runs: the second continues the month's allowances from what the first included.
    first = rate(runtime, book, date(2026, 3, 10), parts)
    second = rate(runtime, book, date(2026, 4, 10), parts)
    again = rate(runtime, book, date(2026, 4, 10), parts)
    assert len(second.runs) == parts
    if parts == 4:
        assert [r.rated > 0 for r in second.runs] == [False, True, False, True]
    expected, errors = row_by_row(versions, cdrs)
    # Nothing new to rate; an unrateable CDR stays unrated and is tried again.
    assert (again.rated, again.unrateable, again.entries) == (0, len(errors), 0)
    assert first.rated + second.rated == len(expected)
    assert second.unrateable == len(errors)
    with unit_of_work(runtime.connection) as uow:
        detail = {d["id"]: d for d in store.usage_detail(uow.conn, book.id)}
        stored = uow.conn.execute(
            "select cdr_id, rate_plan, plan_version from cdr_ratings where book_id = %s",
            (book.id,),
        ).fetchall()
        plan_of = {r[0]: (r[1], r[2]) for r in stored}
        got = [(r[0], *plan_of[r[0]], *(detail[r[0]][k] for k in COLUMNS)) for r in expected]
        assert [tuple(map(str, g)) for g in got] == [tuple(map(str, e[:9])) for e in expected]
        assert {i: detail[i]["rating_error"] for i, _ in errors} == dict(errors)
        assert all(detail[i]["amount"] is None for i, _ in errors)
        # The summaries: per local day, what the rule gives, to Income:Usage.
        by_day: dict[date, Decimal] = defaultdict(Decimal)
        for e in expected:
            by_day[e[9]] += e[7]
        posted = uow.conn.execute(
            "select e.effective_date, -sum(p.amount) from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " join journal_entries e on e.book_id = p.book_id and e.id = p.entry_id"
            " where p.book_id = %s and a.name = %s and p.dimensions->>'via' like 'cdr_rating:%%'"
            " group by 1",
            (book.id, USAGE),
        ).fetchall()
        assert dict(posted) == {d: t for d, t in by_day.items() if t != 0}
        assert first.amounts["GBP"] + second.amounts["GBP"] == sum(by_day.values())
        assert verify_everything(uow.conn, book.id) == []


def test_a_concurrent_run_waits_for_the_first_and_rates_nothing_twice(
    runtime: Runtime, book: BookFixture
) -> None:
    setup(runtime, book)
    sub = "+447700900001"
    rows = [(n, row(f"c{n}", sub, f"2026-03-0{n}T10:00:00+00:00", "400")) for n in (2, 3, 4)]
    in_tx(runtime, lambda c: store.import_cdrs(c, book.id, rows))
    with runtime.connection() as a, runtime.connection() as b:
        first = store.rate_through(a, book.id, date(2026, 4, 1))  # holds the book's run lock
        b.execute("set lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            store.rate_through(b, book.id, date(2026, 4, 1))
        b.rollback()
        a.commit()
        second = store.rate_through(b, book.id, date(2026, 4, 1))
        b.commit()
    assert (first.rated, second.rated, second.entries) == (3, 0, 0)
    # 420 s billed each (60/60) at 0.60/min in peak; the first has the 300 s allowance.
    assert first.amounts == {"GBP": D("1.20") + D("4.20") + D("4.20")}
    with unit_of_work(runtime.connection) as uow:
        assert verify_everything(uow.conn, book.id) == []


def _queued(runtime: Runtime, book: BookFixture) -> list[str]:
    with unit_of_work(runtime.connection) as uow:
        rows = uow.conn.execute(
            "select cdr_id from cdr_rating_queue where book_id = %s order by cdr_id", (book.id,)
        ).fetchall()
    return [r[0] for r in rows]


def test_a_run_empties_the_queue_and_a_cdr_imported_late_is_still_rated(
    runtime: Runtime, book: BookFixture
) -> None:
    setup(runtime, book)
    sub = "+447700900001"
    rows = [(n, row(f"c{n}", sub, f"2026-03-0{n}T10:00:00+00:00", "400")) for n in (2, 3)]
    # One CDR after the cut-off waits in the queue for a later run.
    rows.append((9, row("april", sub, "2026-04-02T10:00:00+00:00", "400")))
    in_tx(runtime, lambda c: store.import_cdrs(c, book.id, rows))
    assert _queued(runtime, book) == ["april", "c2", "c3"]
    first = in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 4, 1)))
    assert (first.rated, first.amounts) == (2, {"GBP": D("1.20") + D("4.20")})
    assert _queued(runtime, book) == ["april"]
    # A second run finds nothing.
    again = in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 4, 1)))
    assert (again.rated, again.unrateable, again.entries) == (0, 0, 0)
    # A CDR imported after the run, started before the rated ones: rated by the next run,
    # with what the month's allowance had left (nothing: c2 took it).
    late = [(1, row("late", sub, "2026-03-02T09:00:00+00:00", "400"))]
    in_tx(runtime, lambda c: store.import_cdrs(c, book.id, late))
    assert _queued(runtime, book) == ["april", "late"]
    third = in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 4, 1)))
    assert (third.rated, third.amounts) == (1, {"GBP": D("4.20")})
    assert _queued(runtime, book) == ["april"]
    with unit_of_work(runtime.connection) as uow:
        detail = {d["id"]: d for d in store.usage_detail(uow.conn, book.id)}
        assert (detail["late"]["included"], detail["late"]["amount"]) == (D(0), D("4.20"))
        assert detail["april"]["amount"] is None
        assert verify_everything(uow.conn, book.id) == []


def test_a_cdr_imported_while_a_run_works_waits_for_the_next_run(
    runtime: Runtime, book: BookFixture
) -> None:
    setup(runtime, book)
    sub = "+447700900001"
    early = [(1, row("c1", sub, "2026-03-03T10:00:00+00:00", "400"))]
    in_tx(runtime, lambda c: store.import_cdrs(c, book.id, early))
    with runtime.connection() as run:
        first = store.rate_through(run, book.id, date(2026, 4, 1))  # not committed yet
        # Imported and committed while the run's transaction is open: not the run's.
        late = [(2, row("c0", sub, "2026-03-02T10:00:00+00:00", "400"))]
        in_tx(runtime, lambda c: store.import_cdrs(c, book.id, late))
        run.commit()
    assert first.rated == 1
    assert _queued(runtime, book) == ["c0"]
    second = in_tx(runtime, lambda c: store.rate_through(c, book.id, date(2026, 4, 1)))
    # c1 took the allowance; c0 (earlier, but rated later) takes what was left: nothing.
    assert (second.rated, second.amounts) == (1, {"GBP": D("4.20")})
    assert _queued(runtime, book) == []


def test_a_failing_part_rolls_back_alone_and_its_cdrs_wait_for_the_next_run(
    runtime: Runtime, book: BookFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(runtime, book)
    rows = [
        (n, row(f"c{n}", sub, "2026-03-02T10:00:00+00:00", "400"))
        for n, sub in enumerate(SUBSCRIBERS[:2])
    ]
    in_tx(runtime, lambda c: store.import_cdrs(c, book.id, rows))
    rate_through = store.rate_through

    def failing(
        conn: psycopg.Connection, book_id: Any, through: date, part: int = 0, parts: int = 1
    ) -> store.RatingRun:
        run = rate_through(conn, book_id, through, part, parts)
        if part == 3:  # subscriber 1's part
            raise RuntimeError("the part failed")
        return run

    monkeypatch.setattr(store, "rate_through", failing)
    with pytest.raises(RuntimeError, match="the part failed"):
        store.rate_in_parts(runtime.connection, book.id, date(2026, 4, 1), 4)
    # Subscriber 2's part (1) committed; subscriber 1's CDR is still queued.
    assert _queued(runtime, book) == ["c0"]
    monkeypatch.setattr(store, "rate_through", rate_through)
    runs = store.rate_in_parts(runtime.connection, book.id, date(2026, 4, 1), 4)
    assert [r.rated for r in runs] == [0, 0, 0, 1]
    assert _queued(runtime, book) == []
    with unit_of_work(runtime.connection) as uow:
        assert verify_everything(uow.conn, book.id) == []
