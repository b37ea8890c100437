"""The time CSV import, shared by `activebilling time import FILE` and
`POST /v1/time-entries/import` (text/csv body): a ConnectWise Manage time-entry
export with a header row — `Member`, `Date Start` (YYYY-MM-DD or MM/DD/YYYY),
`Time Start` and `Time End` (HH:MM, optional), `Hours Actual` (decimal hours,
used when no times), `Work Role`, `Billable Option` (`Billable`, `Do Not
Bill`, `No Charge`), `Notes`, `Ticket #`, `Project` (optional), `Agreement`
(the contract id), `Time Entry ID` (kept as external id).

Row errors: the first bad row refuses the whole file (nothing is written, the
caller's transaction rolls back) with the error of that row, its message
prefixed by `line N:` (the header is line 1) and `line` among its fields.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from billing.errors import InvalidBillingRequest
from billing.postgres import msp
from ledger.errors import LedgerError

__all__ = ["connectwise_rows", "import_time_csv"]

BILLABLE_OPTIONS = {"billable": "billable", "do not bill": "do_not_bill", "no charge": "no_charge"}


def _bad(line: int, message: str, name: str) -> InvalidBillingRequest:
    return InvalidBillingRequest(f"line {line}: {message}", field=name, line=line)


def _cw_date(text: str, line: int) -> date:
    for layout in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text.strip(), layout).date()
        except ValueError:
            continue
    raise _bad(line, f"Date Start {text!r} is not YYYY-MM-DD or MM/DD/YYYY", "Date Start")


def connectwise_rows(rows: Iterable[Mapping[str, str]]) -> list[tuple[int, dict[str, Any]]]:
    """(line, time entry fields) from ConnectWise Manage export rows."""
    specs: list[tuple[int, dict[str, Any]]] = []
    for line, row in enumerate(rows, start=2):

        def cell(name: str, row: Mapping[str, str] = row) -> str:
            return (row.get(name) or "").strip()

        option = BILLABLE_OPTIONS.get(cell("Billable Option").lower() or "billable")
        if option is None:
            raise _bad(
                line, f"Billable Option {cell('Billable Option')!r} is unknown", "Billable Option"
            )
        spec: dict[str, Any] = {
            "person": cell("Member"),
            "contract": cell("Agreement"),
            "date": _cw_date(cell("Date Start"), line),
            "role": cell("Work Role"),
            "billable": option,
            "notes": cell("Notes"),
            "ticket": cell("Ticket #") or None,
            "project": cell("Project") or None,
            "external_id": cell("Time Entry ID") or None,
        }
        if cell("Time Start") and cell("Time End"):
            spec["start"], spec["end"] = cell("Time Start"), cell("Time End")
        else:
            try:
                hours = Decimal(cell("Hours Actual"))
            except InvalidOperation:
                raise _bad(
                    line, f"Hours Actual {cell('Hours Actual')!r} is not a number", "Hours Actual"
                ) from None
            if not hours.is_finite():
                raise _bad(line, "Hours Actual must be finite", "Hours Actual")
            spec["minutes"] = int((hours * 60).to_integral_value())
        specs.append((line, spec))
    return specs


def import_time_csv(
    conn: psycopg.Connection, book_id: uuid.UUID, text: str, approve_on: date | None = None
) -> list[msp.TimeEntry]:
    """Every row as a time entry (approved on `approve_on` when given), or none."""
    rows = connectwise_rows(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows:
        raise InvalidBillingRequest("the file has no time entries", field="body")
    entries = []
    for line, spec in rows:
        try:
            entry = msp.create_time_entry(conn, book_id, msp.TimeEntrySpec(**spec))
            if approve_on is not None:
                entry = msp.approve_time_entry(conn, book_id, str(entry.id), approve_on)
        except LedgerError as exc:
            raise type(exc)(f"line {line}: {exc.message}", **(exc.fields | {"line": line})) from exc
        entries.append(entry)
    return entries
