"""Revenue recognition runs and billing reports (AR aging, deferred revenue, revenue)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from adapters.http.commands import require
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, book_today, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from billing.postgres import reports
from billing.postgres.recognition import RecognitionResult, run_recognition
from ledger.money import minor_unit_text as _money


class RecognitionRunIn(msgspec.Struct, forbid_unknown_fields=True):
    through: date | None = None


def _range(date_from: date | None, date_to: date | None) -> tuple[date, date]:
    if date_from is None or date_to is None:
        raise ApiError(400, "invalid_range", "give both from and to (YYYY-MM-DD)")
    if date_to < date_from:
        raise ApiError(
            400, "invalid_range", f"the range ends ({date_to}) before it starts ({date_from})"
        )
    return date_from, date_to


def recognition_json(result: RecognitionResult) -> dict[str, Any]:
    return {
        "through": result.through.isoformat(),
        "entries": result.entries,
        "lines": result.lines,
        "recognized": {c: _money(a, c) for c, a in sorted(result.amount_by_currency.items())},
    }


def ar_aging_json(day: date, lines: list[reports.AgingLine]) -> dict[str, Any]:
    summary = reports.aging_summary(lines)
    return {
        "as_of": day.isoformat(),
        "totals": {
            c: {b: _money(v, c) for b, v in buckets.items()} for c, buckets in summary.items()
        },
        "invoices": [
            {
                "invoice": str(line.invoice_id),
                "number": line.number,
                "customer": str(line.customer_id),
                "customer_name": line.customer_name,
                "currency": line.currency,
                "due_date": line.due_date.isoformat() if line.due_date else None,
                "amount_due": _money(line.amount_due, line.currency),
                "bucket": line.bucket,
            }
            for line in lines
        ],
    }


def deferred_revenue_json(day: date, report: dict[str, Any]) -> dict[str, Any]:
    return {
        "as_of": day.isoformat(),
        "balances": [
            {"currency": c, "balance": _money(v, c)} for c, v in report["balances"].items()
        ],
        "by_revenue_account": [
            {**row, "amount": _money(row["amount"], row["currency"])}
            for row in report["by_revenue_account"]
        ],
        "waterfall": [
            {**row, "amount": _money(row["amount"], row["currency"])} for row in report["waterfall"]
        ],
    }


def revenue_json(start: date, end: date, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "lines": [{**r, "amount": _money(r["amount"], r["currency"])} for r in rows],
    }


class RevenueController(Controller):
    path = "/v1"

    @post("/revenue-recognition-runs", operation_id="runRevenueRecognition", sync_to_thread=True)
    def run(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        data: JSONBody[RecognitionRunIn | None] = None,
    ) -> Response[bytes]:
        # A recognition run is idempotent by construction (what is due is read
        # from the ledger), so a retried request posts nothing twice.
        require(principal, Permission.BILLING_WRITE)
        with runtime.connection() as conn:
            today = book_today(conn, runtime, principal)
            conn.rollback()
        through = (data.through if data else None) or today
        result = run_recognition(runtime.connection, principal.book_id, through, today)
        return json_response(recognition_json(result), 201)

    @get("/reports/ar-aging", operation_id="getArAging", sync_to_thread=True)
    def ar_aging(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            lines = reports.ar_aging(conn, principal.book_id, day)
        return json_response(ar_aging_json(day, lines))

    @get("/reports/deferred-revenue", operation_id="getDeferredRevenue", sync_to_thread=True)
    def deferred_revenue(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            report = reports.deferred_revenue(conn, principal.book_id, day)
        return json_response(deferred_revenue_json(day, report))

    @get(
        "/reports/deferred-revenue/roll-forward",
        operation_id="getDeferredRevenueRollForward",
        sync_to_thread=True,
    )
    def roll_forward(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        start, end = _range(date_from, date_to)
        with Reader(runtime, principal) as conn:
            rows = reports.deferred_roll_forward(conn, principal.book_id, start, end)
        return json_response(
            {
                "from": start.isoformat(),
                "to": end.isoformat(),
                "currencies": {
                    c: {k: _money(v, c) for k, v in figures.items()} for c, figures in rows.items()
                },
            }
        )

    @get("/reports/revenue", operation_id="getRevenue", sync_to_thread=True)
    def revenue(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
    ) -> Response[bytes]:
        start, end = _range(date_from, date_to)
        with Reader(runtime, principal) as conn:
            rows = reports.revenue(conn, principal.book_id, start, end)
        return json_response(revenue_json(start, end, rows))
