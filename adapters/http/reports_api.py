"""Financial statements: balance sheet, income statement, trial balance as recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from adapters.exports import statements
from adapters.http.routes import Reader, book_today, json_response
from adapters.keys import Principal
from adapters.runtime import Runtime


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class ReportsController(Controller):
    path = "/v1/reports"

    @get("/balance-sheet", operation_id="getBalanceSheet", sync_to_thread=True)
    def balance_sheet(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
        as_recorded_at: FromQuery[datetime | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            document = statements.balance_sheet(conn, principal.book_id, day, _utc(as_recorded_at))
        return json_response(document)

    @get("/income-statement", operation_id="getIncomeStatement", sync_to_thread=True)
    def income_statement(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
        by: FromQuery[str | None] = None,
        as_recorded_at: FromQuery[datetime | None] = None,
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            end = date_to or book_today(conn, runtime, principal)
            start = date_from or end.replace(month=1, day=1)
            document = statements.income_statement(
                conn, principal.book_id, start, end, by=by, recorded_at=_utc(as_recorded_at)
            )
        return json_response(document)

    @get(
        "/trial-balance/as-recorded", operation_id="getTrialBalanceAsRecorded", sync_to_thread=True
    )
    def trial_balance_as_recorded(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_recorded_at: FromQuery[datetime],
        as_of: FromQuery[date | None] = None,
    ) -> Response[bytes]:
        at = _utc(as_recorded_at)
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            lines = statements.trial_balance_lines(conn, principal.book_id, day, at)
        return json_response(statements.trial_balance_document(lines, day, at))
