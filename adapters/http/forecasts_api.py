"""The cash-flow forecast and its back-test (API.md, "Insight")."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from adapters.http.problems import ApiError
from adapters.http.routes import Reader, book_today, json_response
from adapters.keys import Principal
from adapters.runtime import Runtime
from billing import forecast as rules
from billing.postgres.forecast import MAX_WEEKS, cash_forecast, receipts_by_week
from ledger.money import minor_unit_text as money


def check_weeks(weeks: int) -> int:
    """ValueError unless 1..MAX_WEEKS."""
    if not 1 <= weeks <= MAX_WEEKS:
        raise ValueError(f"weeks must be 1 to {MAX_WEEKS}, got {weeks}")
    return weeks


def _weeks(weeks: int) -> int:
    try:
        return check_weeks(weeks)
    except ValueError as exc:
        raise ApiError(400, "invalid_weeks", str(exc)) from None


def forecast_json(as_of: date, plan: rules.Forecast) -> dict[str, Any]:
    return {
        "as_of": as_of.isoformat(),
        "rules": list(rules.RULES),
        "weeks": [
            {
                "week": n // max(1, len(plan.failure_rate)) + 1,
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "currency": w.currency,
                "open_invoices": money(w.open_invoices, w.currency),
                "scheduled_billing": money(w.scheduled_billing, w.currency),
                "gross": money(w.gross, w.currency),
                "expected_failures": money(w.expected_failures, w.currency),
                "net": money(w.net, w.currency),
            }
            for n, w in enumerate(plan.weeks)
        ],
        "beyond": {c: money(v, c) for c, v in plan.beyond.items()},
        "failure_rate": {c: str(v) for c, v in plan.failure_rate.items()},
    }


def cash_document(conn: Any, book_id: Any, today: date, weeks: int) -> dict[str, Any]:
    return forecast_json(today, cash_forecast(conn, book_id, today, _weeks(weeks)))


class ForecastsController(Controller):
    path = "/v1/forecasts"

    @get("/cash", operation_id="getCashForecast", sync_to_thread=True)
    def cash(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        weeks: Annotated[int, QueryParameter(name="weeks")] = 13,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            today = book_today(conn, runtime, principal)
            document = cash_document(conn, principal.book_id, today, weeks)
        return json_response(document)

    @get("/cash/backtest", operation_id="getCashForecastBacktest", sync_to_thread=True)
    def backtest(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date, QueryParameter(name="from")],
        weeks: Annotated[int, QueryParameter(name="weeks")] = 13,
    ) -> Response[bytes]:
        _weeks(weeks)
        with Reader(runtime, principal) as conn:
            today = book_today(conn, runtime, principal)
            # Only weeks that are over by today can be compared with what arrived.
            whole = (today - date_from).days // 7
            if whole < 1:
                raise ApiError(
                    400,
                    "invalid_range",
                    f"from ({date_from}) must be at least a week before the book's today"
                    f" ({today}), so that a whole week can be compared",
                )
            compared = min(weeks, whole)
            plan = cash_forecast(conn, principal.book_id, date_from, compared, replay=True)
            first = date_from + timedelta(days=1)
            actual = receipts_by_week(conn, principal.book_id, first, compared)
        rows, overall = rules.backtest_errors(plan, actual)
        return json_response(
            {
                "from": date_from.isoformat(),
                "weeks_compared": compared,
                "rules": [
                    *rules.RULES,
                    "The back-test rebuilds the forecast from what was recorded by 'from'"
                    " (postings effective by then; subscriptions started and cancellations"
                    " recorded by then) and compares each week's net with the succeeded"
                    " payments received in it.",
                ],
                "weeks": [
                    {
                        "start": r.start.isoformat(),
                        "end": (r.start + timedelta(days=6)).isoformat(),
                        "currency": r.currency,
                        "forecast": money(r.forecast, r.currency),
                        "actual": money(r.actual, r.currency),
                        "error": money(r.error, r.currency),
                    }
                    for r in rows
                ],
                "overall": [
                    {
                        "currency": c,
                        **{k: money(v, c) for k, v in o.items() if k != "wape" and v is not None},
                        "wape": None if o["wape"] is None else str(o["wape"]),
                    }
                    for c, o in overall.items()
                ],
            }
        )
