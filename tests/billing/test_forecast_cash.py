"""The cash-flow forecast and its back-test (issue 12 item 3)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.runtime import Runtime
from billing.forecast import (
    OPEN,
    SCHEDULED,
    LatenessClasses,
    Receivable,
    backtest_errors,
    forecast,
)
from tests.billing.insight_fixtures import customer, invoice, post, price
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import PROBLEM, auth, open_client

D = Decimal
FIRST = date(2026, 3, 2)


def test_receipts_land_on_due_date_shifted_by_lateness() -> None:
    receivables = [
        Receivable(OPEN, "a", "USD", date(2026, 3, 2), D("10.00")),  # week 1, on time
        Receivable(OPEN, "b", "USD", date(2026, 3, 2), D("20.00")),  # 7.4 days late: week 2
        Receivable(OPEN, "new", "USD", date(2026, 2, 1), D("30.00")),  # overdue: first day
        Receivable(SCHEDULED, "new", "USD", date(2026, 3, 10), D("40.00")),  # +2 fallback
        Receivable(OPEN, "a", "USD", date(2026, 6, 1), D("50.00")),  # after week 2
    ]
    late = {("USD", "a"): D(0), ("USD", "b"): D("7.4")}
    plan = forecast(receivables, late, {"USD": D(2)}, {"USD": D("0.1")}, FIRST, 2)
    got = [(w.start, w.open_invoices, w.scheduled_billing, w.expected_failures) for w in plan.weeks]
    assert got == [
        (date(2026, 3, 2), D("40.00"), D(0), D("4.00")),
        (date(2026, 3, 9), D("20.00"), D("40.00"), D("6.00")),
    ]
    assert plan.beyond == {"USD": D("50.00")}
    rows, overall = backtest_errors(plan, {(date(2026, 3, 2), "USD"): D("30.00")})
    assert [r.error for r in rows] == [D("6.00"), D("54.00")]
    assert overall["USD"] == {
        "forecast": D("90.00"),
        "actual": D("30.00"),
        "error": D("60.00"),
        "mean_absolute_error": D("30.00"),
        "wape": D("2.0000"),
    }


_CUSTOMERS = ["a", "b", "c", "d", "e"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([OPEN, SCHEDULED]),
            st.sampled_from(_CUSTOMERS),
            st.sampled_from(["USD", "EUR"]),
            st.dates(date(2026, 2, 1), date(2026, 6, 30)),
            st.decimals(min_value=D("0.01"), max_value=D("9999.99"), places=2),
        ),
        max_size=30,
    ),
    st.dictionaries(
        st.tuples(st.sampled_from(["USD", "EUR"]), st.sampled_from(_CUSTOMERS)),
        st.sampled_from([D(0), D("0.5"), D("1.5"), D("2.49"), D("2.5"), D("-1.5"), D("9.51")]),
    ),
    st.dictionaries(st.sampled_from(["USD", "EUR"]), st.sampled_from([D("1.5"), D("4.2")])),
)
def test_scheduled_billing_summed_by_lateness_class_gives_the_same_weeks(
    rows: list[tuple[str, str, str, date, Decimal]],
    late: dict[tuple[str, str], Decimal],
    fallback: dict[str, Decimal],
) -> None:
    receivables = [Receivable(*row) for row in rows]
    classes = LatenessClasses(late, fallback)
    summed: dict[tuple[str, str, str, date], Decimal] = defaultdict(Decimal)
    for r in receivables:
        who = classes(r.customer, r.currency) if r.source == SCHEDULED else r.customer
        summed[(r.source, who, r.currency, r.due)] += r.amount
    collapsed = [Receivable(s, who, c, due, a) for (s, who, c, due), a in summed.items()]
    rates = {"USD": D("0.0125")}
    assert forecast(collapsed, classes.days_late(), fallback, rates, FIRST, 8) == forecast(
        receivables, late, fallback, rates, FIRST, 8
    )


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def test_forecast_from_open_ar_equals_ar_total_when_all_pay_on_time(
    runtime: Runtime, client: Any
) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 1))
    key = book.admin_key
    a, b = customer(client, key, "A"), customer(client, key, "B", payment_terms_days=45)
    for who, amount in ((a, "100.00"), (b, "250.55"), (a, "40.00")):
        invoice(client, key, who, amount)
    taxed = customer(client, key, "Taxed", tax_rate="0.1")
    plan = price(client, key, "100.00", "month")
    post(client, key, "/v1/subscriptions", {"customer": taxed, "items": [{"price": plan}]})
    r = client.get("/v1/forecasts/cash?weeks=13", headers=auth(key))
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["as_of"] == "2026-01-01" and len(document["weeks"]) == 13
    aging = client.get("/v1/reports/ar-aging?as_of=2026-01-01", headers=auth(key)).json()
    assert aging["totals"]["USD"]["total"] == "390.55"
    assert sum(D(w["open_invoices"]) for w in document["weeks"]) == D("390.55")
    by_week = {w["start"]: w for w in document["weeks"]}
    # No history: everyone pays on the due date. Net 30 → Jan 31 (week of Jan 30); B's net
    # 45 → Feb 15 (week of Feb 13).
    assert by_week["2026-01-30"]["open_invoices"] == "140.00"
    assert by_week["2026-02-13"]["open_invoices"] == "250.55"
    # The subscription's periods (not yet billed) with 10 % tax, due 30 days after each start:
    # Jan 1 → Jan 31, Feb 1 → Mar 3, Mar 1 → Mar 31; April's (due May 1) is beyond week 13.
    scheduled = [(w["start"], w["scheduled_billing"]) for w in document["weeks"]]
    assert [s for s in scheduled if s[1] != "0.00"] == [
        ("2026-01-30", "110.00"),
        ("2026-02-27", "110.00"),
        ("2026-03-27", "110.00"),
    ]
    assert document["beyond"] == {"USD": "110.00"}
    assert all(w["expected_failures"] == "0.00" for w in document["weeks"])
    for bad in ("weeks=0", "weeks=105", "weeks=x"):
        r = client.get(f"/v1/forecasts/cash?{bad}", headers=auth(key))
        assert r.status_code == 400, r.text


@pytest.fixture(scope="module")
def history(runtime: Runtime, client: Any) -> BookFixture:
    """A pays 100.00 on its due day (Jan 31), B pays 200.00 on Feb 10; C is invoiced
    later (Feb 3, due on receipt), after the back-test's day."""
    book = make_book(runtime, "USD", date(2026, 1, 1))
    key = book.admin_key
    a, b = customer(client, key, "A"), customer(client, key, "B")
    i1, i2 = invoice(client, key, a, "100.00"), invoice(client, key, b, "200.00")
    pay = {"currency": "USD", "method": "bank_transfer"}
    post(client, key, "/v1/clock", {"now": "2026-01-31"}, 200)
    post(client, key, "/v1/payments", {**pay, "customer": a, "amount": "100.00", "invoice": i1})
    post(client, key, "/v1/clock", {"now": "2026-02-03"}, 200)
    c = customer(client, key, "C", payment_terms="due_on_receipt", payment_terms_days=0)
    invoice(client, key, c, "70.00")
    post(client, key, "/v1/clock", {"now": "2026-02-10"}, 200)
    post(client, key, "/v1/payments", {**pay, "customer": b, "amount": "200.00", "invoice": i2})
    post(client, key, "/v1/clock", {"now": "2026-03-31"}, 200)
    return book


def test_backtest_replays_without_hindsight(client: Any, history: BookFixture) -> None:
    r = client.get(
        "/v1/forecasts/cash/backtest?from=2026-01-05&weeks=6", headers=auth(history.admin_key)
    )
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["weeks_compared"] == 6
    got = [(w["start"], w["forecast"], w["actual"], w["error"]) for w in document["weeks"]]
    assert got == [
        ("2026-01-06", "0.00", "0.00", "0.00"),
        ("2026-01-13", "0.00", "0.00", "0.00"),
        ("2026-01-20", "0.00", "0.00", "0.00"),
        ("2026-01-27", "300.00", "100.00", "200.00"),  # both due Jan 31; B paid late
        ("2026-02-03", "0.00", "0.00", "0.00"),  # C's invoice was not known on Jan 5
        ("2026-02-10", "0.00", "200.00", "-200.00"),
    ]
    assert document["overall"] == [
        {
            "currency": "USD",
            "forecast": "300.00",
            "actual": "300.00",
            "error": "0.00",
            "mean_absolute_error": "66.67",
            "wape": "1.3333",
        }
    ]
    # From Feb 3, B's history (none settled) falls back; A is on time; C owes 70.00 due Feb 3.
    later = client.get(
        "/v1/forecasts/cash/backtest?from=2026-02-03&weeks=2", headers=auth(history.admin_key)
    ).json()
    assert [(w["forecast"], w["actual"]) for w in later["weeks"]] == [
        ("270.00", "200.00"),
        ("0.00", "0.00"),
    ]


def test_backtest_refuses_a_range_not_yet_over(client: Any, history: BookFixture) -> None:
    for query in ("from=2026-03-28", "from=2026-04-30", "from=x", "from=2026-01-05&weeks=0"):
        r = client.get(f"/v1/forecasts/cash/backtest?{query}", headers=auth(history.admin_key))
        assert r.status_code == 400, (query, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
