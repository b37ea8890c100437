"""Services (MSP) commands: contracts, time entries (one, approval, CSV import),
the contract billing run.

`time import FILE` reads a ConnectWise Manage time-entry export (CSV, header
row): `Member`, `Date Start` (YYYY-MM-DD or MM/DD/YYYY), `Time Start` and
`Time End` (HH:MM, optional), `Hours Actual` (decimal hours, used when no times),
`Work Role`, `Billable Option` (`Billable`, `Do Not Bill`, `No Charge`),
`Notes`, `Ticket #`, `Agreement` (the contract id), `Time Entry ID` (kept as
external id). The file is imported whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.cli.common import BOOK_HELP, CliError, _book_id, _date, _print
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work

BILLABLE_OPTIONS = {"billable": "billable", "do not bill": "do_not_bill", "no charge": "no_charge"}


def _cw_date(text: str, line: int) -> date:
    for layout in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text.strip(), layout).date()
        except ValueError:
            continue
    raise CliError(f"line {line}: Date Start {text!r} is not YYYY-MM-DD or MM/DD/YYYY")


def connectwise_rows(rows: Iterable[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Time entry fields from ConnectWise Manage export rows (line numbers count the header)."""
    specs: list[dict[str, Any]] = []
    for line, row in enumerate(rows, start=2):

        def cell(name: str, row: Mapping[str, str] = row) -> str:
            return (row.get(name) or "").strip()

        option = BILLABLE_OPTIONS.get(cell("Billable Option").lower() or "billable")
        if option is None:
            raise CliError(f"line {line}: Billable Option {cell('Billable Option')!r} is unknown")
        spec: dict[str, Any] = {
            "person": cell("Member"),
            "contract": cell("Agreement"),
            "date": _cw_date(cell("Date Start"), line),
            "role": cell("Work Role"),
            "billable": option,
            "notes": cell("Notes"),
            "ticket": cell("Ticket #") or None,
            "external_id": cell("Time Entry ID") or None,
        }
        if cell("Time Start") and cell("Time End"):
            spec["start"], spec["end"] = cell("Time Start"), cell("Time End")
        else:
            try:
                hours = Decimal(cell("Hours Actual"))
            except InvalidOperation:
                raise CliError(f"line {line}: Hours Actual {cell('Hours Actual')!r}") from None
            spec["minutes"] = int((hours * 60).to_integral_value())
        specs.append(spec)
    return specs


def _work(args: argparse.Namespace, action: Callable[[Any, Any, date], Any]) -> Any:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            result = action(uow.conn, book_id, today)
            uow.commit()
    return result


def cmd_contracts_create(args: argparse.Namespace) -> int:
    from adapters.http.services_api import contract_json
    from billing.postgres import msp

    try:
        terms = json.loads(args.terms)
    except json.JSONDecodeError as exc:
        raise CliError(f"--terms is not JSON: {exc}") from None
    if not isinstance(terms, dict):
        raise CliError("--terms must be a JSON object")
    doc = _work(
        args,
        lambda conn, book, _: contract_json(
            msp.create_contract(
                conn,
                book,
                args.customer,
                args.type,
                args.start_date,
                terms,
                end_date=args.end_date,
            )
        ),
    )
    _print(args, doc, f"contract {doc['id']} ({doc['type']}) created")
    return 0


def cmd_time_approve(args: argparse.Namespace) -> int:
    from billing.postgres import msp

    entry = _work(
        args, lambda conn, book, today: msp.approve_time_entry(conn, book, args.id, today)
    )
    _print(
        args,
        {
            "id": str(entry.id),
            "status": entry.status,
            "drawn_minutes": entry.drawn_minutes,
            "overage_minutes": entry.overage_minutes,
        },
        f"time entry {entry.id} approved",
    )
    return 0


def cmd_time_import(args: argparse.Namespace) -> int:
    from billing.postgres import msp

    try:
        with open(args.file, newline="", encoding="utf-8-sig") as handle:
            specs = connectwise_rows(csv.DictReader(handle))
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None

    def action(conn: Any, book: Any, today: date) -> list[str]:
        ids = []
        for spec in specs:
            entry = msp.create_time_entry(conn, book, msp.TimeEntrySpec(**spec))
            if args.approve:
                msp.approve_time_entry(conn, book, str(entry.id), today)
            ids.append(str(entry.id))
        return ids

    ids = _work(args, action)
    _print(args, {"imported": len(ids), "ids": ids}, f"{len(ids)} time entries imported")
    return 0


def cmd_contract_billing_run(args: argparse.Namespace) -> int:
    from adapters.http.services_api import run_json
    from billing.postgres import msp

    doc = _work(
        args,
        lambda conn, book, today: run_json(
            msp.contract_billing_run(conn, book, args.as_of or today, today)
        ),
    )
    lines = [f"contract billing run as of {doc['as_of']}: {len(doc['invoices'])} invoice(s)"]
    lines += [f"  {i['number']}  {i['total']}" for i in doc["invoices"]]
    lines += [
        f"  held: client {client} totals {total} (below zero: carried to the next run,"
        " or credit the invoice that billed the time)"
        for client, total in doc["held_below_zero"].items()
    ]
    _print(args, doc, "\n".join(lines))
    return 0


def cmd_wip_accrue(args: argparse.Namespace) -> int:
    from adapters.http.services_api import wip_json
    from billing.postgres import msp

    def action(conn: Any, book: Any, today: date) -> dict[str, Any]:
        as_of = args.as_of or today
        return wip_json(as_of, msp.accrue_wip(conn, book, as_of, today))

    doc = _work(args, action)
    lines = [f"WIP accrued as of {doc['as_of']}: {len(doc['contracts'])} contract(s)"]
    lines += [f"  {c['contract']}  {c['amount']} {c['currency']}" for c in doc["contracts"]]
    _print(args, doc, "\n".join(lines))
    return 0


def _services_parsers(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> Any:
    """Adds the services commands; returns the `contracts` subcommands (for more)."""
    contracts = sub.add_parser("contracts", help="MSP contracts").add_subparsers(
        dest="contracts_command", required=True
    )
    create = command("create", cmd_contracts_create, "create a contract", contracts)
    create.add_argument("--book", help=BOOK_HELP)
    create.add_argument("--customer", required=True, help="customer id or external id")
    create.add_argument(
        "--type",
        required=True,
        choices=["time_and_materials", "retainer", "fixed_fee", "managed_services"],
        help="the contract type",
    )
    create.add_argument("--start-date", type=_date, required=True, help="YYYY-MM-DD")
    create.add_argument("--end-date", type=_date, default=None, help="YYYY-MM-DD (open end)")
    create.add_argument(
        "--terms", default="{}", help='terms as JSON, e.g. {"hourly_rate": "150.00"} (API.md)'
    )
    time = sub.add_parser("time", help="MSP time entries").add_subparsers(
        dest="time_command", required=True
    )
    approve = command("approve", cmd_time_approve, "approve a draft time entry", time)
    approve.add_argument("--book", help=BOOK_HELP)
    approve.add_argument("id", help="the time entry id")
    imp = command("import", cmd_time_import, "import a ConnectWise Manage time export", time)
    imp.add_argument("--book", help=BOOK_HELP)
    imp.add_argument("file", help="the CSV file (columns: see `activebilling time import`)")
    imp.add_argument("--approve", action="store_true", help="approve each entry as imported")
    run = command(
        "contract-billing-run", cmd_contract_billing_run, "invoice MSP contracts through a date"
    )
    run.add_argument("--book", help=BOOK_HELP)
    run.add_argument("--as-of", type=_date, default=None, help="default: the book's today")
    wip = sub.add_parser("wip", help="unbilled time (WIP)").add_subparsers(
        dest="wip_command", required=True
    )
    accrue = command("accrue", cmd_wip_accrue, "accrue approved unbilled T&M time", wip)
    accrue.add_argument("--book", help=BOOK_HELP)
    accrue.add_argument(
        "--as-of", type=_date, default=None, help="a month's last day (default: the book's today)"
    )
    return contracts
