"""Recurring-revenue metrics (API.md, "Insight"): MRR movements, churn,
retention, cohorts, LTV. The same documents serve the CLI and the console."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from adapters.http.problems import ApiError
from adapters.http.routes import Reader, book_today, json_response
from adapters.keys import Principal
from adapters.runtime import Runtime
from billing import metrics
from billing.fx import MissingRate
from billing.postgres.collections import collections
from billing.postgres.fx import functional_currency, has_rates, rate_in_force
from billing.postgres.metrics import mrr
from ledger.money import minor_unit_text as money


def _rate(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _money(value: Decimal | None, currency: str) -> str | None:
    return None if value is None else money(value, currency)


def month_json(m: metrics.MonthMrr) -> dict[str, Any]:
    c = m.currency
    return {
        "month": f"{m.month:%Y-%m}",
        "currency": c,
        "start": money(m.start, c),
        **{name: money(getattr(m, name), c) for name in metrics.MOVEMENTS},
        "end": money(m.end, c),
        "arr": money(m.arr, c),
        "customers": m.customers,
        "churned_customers": m.churned_customers,
        "logo_churn_rate": _rate(m.logo_churn_rate),
        "revenue_churn_rate": _rate(m.revenue_churn_rate),
        "nrr": _rate(m.nrr),
        "grr": _rate(m.grr),
        "arpa": _money(m.arpa, c),
    }


def cohorts_json(report: metrics.MrrReport) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cohort in report.cohorts:
        c, size = cohort.currency, len(cohort.customers)
        out.append(
            {
                "cohort": f"{cohort.month:%Y-%m}",
                "currency": c,
                "customers": size,
                "start_mrr": money(cohort.start_mrr, c),
                "months": [
                    {
                        "month": f"{month:%Y-%m}",
                        "customers": kept,
                        "mrr": money(value, c),
                        "logo_retention": _rate(metrics.ratio(Decimal(kept), Decimal(size))),
                        "revenue_retention": _rate(metrics.ratio(value, cohort.start_mrr)),
                    }
                    for month, (kept, value) in sorted(cohort.retained.items())
                ],
            }
        )
    return out


def mrr_json(first: date, last: date, report: metrics.MrrReport) -> dict[str, Any]:
    return {
        "from": f"{first:%Y-%m}",
        "to": f"{last:%Y-%m}",
        "rules": list(metrics.RULES),
        "months": [month_json(m) for m in report.months],
        "ltv": [
            {
                "currency": c,
                "arpa": _money(v["arpa"], c),
                "revenue_churn_rate": _rate(v["revenue_churn_rate"]),
                "ltv": _money(v["ltv"], c),
                "formula": metrics.LTV_FORMULA,
            }
            for c, v in sorted(report.ltv().items())
        ],
        "cohorts": cohorts_json(report),
    }


def month_range(
    first: str | None, last: str | None, today: date, months: int = 12
) -> tuple[date, date]:
    """The asked months, or the `months` through today's; ValueError when bad."""
    end = f"{today:%Y-%m}"
    default_start = metrics.months_between(date(today.year - 1, today.month, 1), today)[-months]
    return metrics.month_range(first or f"{default_start:%Y-%m}", last or end)


def mrr_document(
    conn: Any, book_id: Any, first: str | None, last: str | None, today: date
) -> dict[str, Any]:
    try:
        start, end = month_range(first, last, today)
    except ValueError as exc:
        raise ApiError(400, "invalid_range", str(exc)) from None
    report = mrr(conn, book_id, start, end)
    document = mrr_json(start, end, report)
    if has_rates(conn, book_id):
        document.update(fx_totals(conn, book_id, report))
    return document


def fx_totals(conn: Any, book_id: Any, report: metrics.MrrReport) -> dict[str, Any]:
    """The months in the book's functional currency (metrics.converted_totals),
    at the rates in force on each month's last day (billing.postgres.fx)."""
    functional = functional_currency(conn, book_id)
    cache: dict[tuple[str, date], Decimal | None] = {}

    def rate(currency: str, day: date) -> Decimal | None:
        if (currency, day) not in cache:
            try:
                found = rate_in_force(conn, book_id, currency, functional, day, functional)
                cache[(currency, day)] = found.rate
            except MissingRate:
                cache[(currency, day)] = None
        return cache[(currency, day)]

    totals, missing = metrics.converted_totals(report.months, functional, rate)
    c = functional
    return {
        "functional_currency": c,
        "totals": [
            {
                "month": f"{t.month:%Y-%m}",
                "currency": c,
                "rate_date": metrics.month_end(t.month).isoformat(),
                "rates": {k: str(v) for k, v in sorted(t.rates.items())},
                "start": money(t.start, c),
                **{name: money(getattr(t, name), c) for name in metrics.MOVEMENTS},
                "fx_effect": money(t.fx_effect, c),
                "end": money(t.end, c),
                "arr": money(t.arr, c),
                "customers": t.customers,
            }
            for t in totals
        ],
        "missing_rates": [{"month": f"{m:%Y-%m}", "currency": cur} for m, cur in missing],
    }


def collections_json(report: dict[str, Any]) -> dict[str, Any]:
    """billing.postgres.collections' document with amounts as strings."""
    amounts = ("opening_ar", "credit_sales", "closing_ar", "closing_current_ar")
    return {
        "from": report["from"].isoformat(),
        "to": report["to"].isoformat(),
        "rules": report["rules"],
        "currencies": [
            {
                **row,
                **{k: money(row[k], row["currency"]) for k in amounts},
                "dso": str(row["dso"]),
                "cei": _rate(row["cei"]),
                "share_paid_on_time": _rate(row["share_paid_on_time"]),
            }
            for row in report["currencies"]
        ],
        "customers": [
            {**row, "average_days_late": str(row["average_days_late"])}
            for row in report["customers"]
        ],
        "aging_trend": [
            {
                "as_of": row["as_of"].isoformat(),
                "currency": row["currency"],
                **{b: money(v, row["currency"]) for b, v in row["buckets"].items()},
            }
            for row in report["aging_trend"]
        ],
    }


def date_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """The asked days, or this month and the two before it through today; ValueError
    when bad."""
    end = last or today
    start = first or metrics.months_between(date(end.year - 1, end.month, 1), end)[-3]
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    if (end - start).days > 3660:
        raise ValueError("a range may span at most ten years")
    return start, end


class MetricsController(Controller):
    path = "/v1/metrics"

    @get("/mrr", operation_id="getMrr", sync_to_thread=True)
    def get_mrr(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[str | None, QueryParameter(name="from")] = None,
        date_to: Annotated[str | None, QueryParameter(name="to")] = None,
        interval: Annotated[str, QueryParameter(name="interval")] = "month",
    ) -> Response[bytes]:
        if interval != "month":
            raise ApiError(400, "invalid_interval", f"interval must be month, got {interval!r}")
        with Reader(runtime, principal) as conn:
            today = book_today(conn, runtime, principal)
            document = mrr_document(conn, principal.book_id, date_from, date_to, today)
        return json_response(document)

    @get("/retention", operation_id="getRetention", sync_to_thread=True)
    def get_retention(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[str | None, QueryParameter(name="from")] = None,
        date_to: Annotated[str | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            today = book_today(conn, runtime, principal)
            document = mrr_document(conn, principal.book_id, date_from, date_to, today)
        keys = ("from", "to", "ltv", "cohorts")
        return json_response({k: document[k] for k in keys})

    @get("/collections", operation_id="getCollections", sync_to_thread=True)
    def get_collections(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            try:
                start, end = date_range(date_from, date_to, book_today(conn, runtime, principal))
            except ValueError as exc:
                raise ApiError(400, "invalid_range", str(exc)) from None
            document = collections_json(collections(conn, principal.book_id, start, end))
        return json_response(document)
