"""Services (MSP) commands: contracts, time entries (one, approval, CSV import),
the contract billing run.

`time import FILE` reads a ConnectWise Manage time-entry export, whole or not
at all (billing/postgres/msp_import.py says the layout; the HTTP route
`POST /v1/time-entries/import` reads the same).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import date
from typing import Any

from adapters.cli.common import BOOK_HELP, CliError, _book_id, _date, _print
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work


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
    from billing.postgres.msp_import import import_time_csv

    try:
        with open(args.file, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    entries = _work(
        args,
        lambda conn, book, today: import_time_csv(
            conn, book, text, today if args.approve else None
        ),
    )
    ids = [str(e.id) for e in entries]
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
