"""Services (MSP) commands, continued: people's cost rates, expenses (one, or a
CSV file with the EXPENSE_CSV header, imported whole or not at all), contract
progress, and the reports `report wip`, `report retainer-burn-down`,
`report profitability` (the same documents as the HTTP reports)."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from adapters.cli.common import BOOK_HELP, CliError, _book_id, _date, _print
from adapters.cli.services import _work
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book


def _read(args: argparse.Namespace, action: Callable[[Any, Any, date], Any]) -> Any:
    with open_runtime() as runtime, runtime.connection() as conn:
        book_id = _book_id(runtime, args.book)
        return action(conn, book_id, get_book(conn, book_id).today(utc_today()))


def cmd_people_set(args: argparse.Namespace) -> int:
    from adapters.http.services_work_api import person_json
    from billing.postgres import msp_reports

    doc = _work(
        args,
        lambda conn, book, _: person_json(
            msp_reports.set_person(conn, book, args.name, args.cost_rate, args.currency, args.role)
        ),
    )
    _print(args, doc, f"{doc['name']}: cost {doc['cost_rate']} {doc['currency']}/h")
    return 0


def cmd_expenses_create(args: argparse.Namespace) -> int:
    from adapters.http.services_work_api import expense_json
    from billing.postgres import msp_expenses

    try:
        receipt = json.loads(args.receipt) if args.receipt else None
    except json.JSONDecodeError as exc:
        raise CliError(f"--receipt is not JSON: {exc}") from None
    spec = msp_expenses.ExpenseSpec(
        contract=args.contract,
        person=args.person,
        date=args.date,
        description=args.description,
        amount=args.amount,
        markup_percent=args.markup_percent,
        billable_amount=args.billable_amount,
        billable=not args.not_billable,
        receipt=receipt,
    )

    def action(conn: Any, book: Any, _: date) -> dict[str, Any]:
        made = msp_expenses.create_expense(conn, book, spec)
        if args.approve:
            made = msp_expenses.approve_expense(conn, book, str(made.id))
        return expense_json(made)

    doc = _work(args, action)
    _print(args, doc, f"expense {doc['id']} ({doc['status']}): bills {doc['billable_amount']}")
    return 0


def cmd_expenses_approve(args: argparse.Namespace) -> int:
    from adapters.http.services_work_api import expense_json
    from billing.postgres import msp_expenses

    doc = _work(
        args,
        lambda conn, book, _: expense_json(msp_expenses.approve_expense(conn, book, args.id)),
    )
    _print(args, doc, f"expense {doc['id']} approved")
    return 0


EXPENSE_CSV = (
    "contract",
    "person",
    "date",
    "description",
    "amount",
    "currency",
    "markup_percent",
    "billable_amount",
    "billable",
    "file_name",
    "content_type",
    "sha256",
    "vendor",
    "external_id",
)


def expense_rows(rows: Iterable[Mapping[str, str]]) -> list[Any]:
    """Expense specs from CSV rows with the EXPENSE_CSV header (line numbers count
    the header); `billable` is yes/no (default yes)."""
    from billing.postgres import msp_expenses

    specs = []
    for line, row in enumerate(rows, start=2):

        def cell(name: str, row: Mapping[str, str] = row) -> str | None:
            return (row.get(name) or "").strip() or None

        billable = (cell("billable") or "yes").lower()
        if billable not in ("yes", "no", "true", "false"):
            raise CliError(f"line {line}: billable {billable!r} is not yes or no")
        try:
            day = date.fromisoformat(cell("date") or "")
        except ValueError:
            raise CliError(f"line {line}: date {cell('date')!r} is not YYYY-MM-DD") from None
        receipt = {
            k: v for k in ("file_name", "content_type", "sha256", "vendor") if (v := cell(k))
        }
        specs.append(
            msp_expenses.ExpenseSpec(
                contract=cell("contract") or "",
                person=cell("person") or "",
                date=day,
                description=cell("description") or "",
                amount=cell("amount") or "",
                currency=cell("currency"),
                markup_percent=cell("markup_percent"),
                billable_amount=cell("billable_amount"),
                billable=billable in ("yes", "true"),
                receipt=receipt or None,
                external_id=cell("external_id"),
            )
        )
    return specs


def cmd_expenses_import(args: argparse.Namespace) -> int:
    from billing.postgres import msp_expenses

    try:
        with open(args.file, newline="", encoding="utf-8-sig") as handle:
            specs = expense_rows(csv.DictReader(handle))
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None

    def action(conn: Any, book: Any, _: date) -> list[str]:
        ids = []
        for spec in specs:
            made = msp_expenses.create_expense(conn, book, spec)
            if args.approve:
                msp_expenses.approve_expense(conn, book, str(made.id))
            ids.append(str(made.id))
        return ids

    ids = _work(args, action)
    _print(args, {"imported": len(ids), "ids": ids}, f"{len(ids)} expenses imported")
    return 0


def cmd_contracts_progress(args: argparse.Namespace) -> int:
    from adapters.http.services_work_api import progress_json
    from billing.postgres import msp, msp_progress

    def action(conn: Any, book: Any, today: date) -> dict[str, Any]:
        state = msp_progress.record_progress(
            conn, book, args.contract, args.date or today, args.percent, adjustment=args.adjustment
        )
        contract = msp.get_contract(conn, book, args.contract)
        return progress_json(str(contract.id), contract.currency, state)

    doc = _work(args, action)
    _print(args, doc, f"{doc['percent_complete']} % complete: earned {doc['earned']}")
    return 0


def cmd_report_wip(args: argparse.Namespace) -> int:
    from adapters.http.services_work_api import wip_report_json
    from billing.postgres import msp_reports

    def action(conn: Any, book: Any, today: date) -> dict[str, Any]:
        as_of = args.as_of or today
        return wip_report_json(as_of, msp_reports.wip_by_age(conn, book, as_of))

    doc = _read(args, action)
    lines = [f"unbilled WIP as of {doc['as_of']}: " + "  ".join(doc["buckets"]) + "  total"]
    lines += [
        f"  {c['customer']}  "
        + "  ".join(c["buckets"][b] for b in doc["buckets"])
        + f"  {c['total']} {c['currency']}"
        for c in doc["clients"]
    ]
    _print(args, doc, "\n".join(lines))
    return 0


def cmd_report_burn_down(args: argparse.Namespace) -> int:
    from adapters.http.services_work_api import burn_down_json
    from billing.postgres import msp_reports
    from billing.postgres.ids import parse_id

    contract_id = parse_id(args.contract, "contract") if args.contract else None
    doc = _read(
        args,
        lambda conn, book, _: burn_down_json(
            msp_reports.retainer_burn_down(conn, book, contract_id)
        ),
    )
    lines = ["contract  period  included  carried-in  used  remaining  carried-out  expired"]
    lines += [
        f"  {p['contract']}  {p['period_start']}  {p['included_hours']}  {p['carried_in_hours']}"
        f"  {p['used_hours']}  {p['remaining_hours']}  {p['carried_out_hours']}"
        f"  {p['expired_hours']}"
        for p in doc["periods"]
    ]
    _print(args, doc, "\n".join(lines))
    return 0


def cmd_report_profitability(args: argparse.Namespace) -> int:
    from adapters.http.services_work_api import profitability_json
    from billing.postgres import msp_reports

    doc = _read(
        args,
        lambda conn, book, _: profitability_json(
            args.date_from,
            args.date_to,
            msp_reports.profitability(conn, book, args.date_from, args.date_to),
        ),
    )
    lines = [f"profitability {doc['from']} to {doc['to']}: revenue  cost  margin"]
    lines += [
        f"  {c['customer']}  {c['revenue']}  {c['cost']}  {c['margin']} {c['currency']}"
        for c in doc["clients"]
    ]
    _print(args, doc, "\n".join(lines))
    return 0


def services_work_parsers(
    sub: Any, command: Callable[..., argparse.ArgumentParser], report: Any, contracts: Any
) -> None:
    people = sub.add_parser("people", help="people's cost rates").add_subparsers(
        dest="people_command", required=True
    )
    person = command("set", cmd_people_set, "set a person's hourly cost rate", people)
    person.add_argument("--book", help=BOOK_HELP)
    person.add_argument("--name", required=True, help="the name time entries carry")
    person.add_argument("--cost-rate", required=True, help="hourly cost, e.g. 45.00")
    person.add_argument("--currency", required=True, help="e.g. USD")
    person.add_argument("--role", default=None, help="e.g. engineer")

    expenses = sub.add_parser("expenses", help="MSP expenses").add_subparsers(
        dest="expenses_command", required=True
    )
    create = command("create", cmd_expenses_create, "record an expense on a contract", expenses)
    create.add_argument("--book", help=BOOK_HELP)
    create.add_argument("--contract", required=True, help="the contract to bill it on")
    create.add_argument("--person", required=True, help="who spent it, as the PSA names them")
    create.add_argument("--date", type=_date, required=True, help="YYYY-MM-DD")
    create.add_argument("--description", required=True, help="what it was for")
    create.add_argument("--amount", required=True, help="the cost, e.g. 42.50")
    create.add_argument("--markup-percent", default=None, help="e.g. 10")
    create.add_argument("--billable-amount", default=None, help="bill this instead of a markup")
    create.add_argument("--not-billable", action="store_true", help="cost only, never billed")
    create.add_argument(
        "--receipt", default=None, help='JSON: {"file_name", "content_type", "sha256", "vendor"}'
    )
    create.add_argument("--approve", action="store_true", help="approve it at once")
    imp = command(
        "import", cmd_expenses_import, "import expenses from CSV (whole or nothing)", expenses
    )
    imp.add_argument("--book", help=BOOK_HELP)
    imp.add_argument("file", help="CSV with the header: " + ",".join(EXPENSE_CSV))
    imp.add_argument("--approve", action="store_true", help="approve each expense as imported")
    approve = command("approve", cmd_expenses_approve, "approve a draft expense", expenses)
    approve.add_argument("--book", help=BOOK_HELP)
    approve.add_argument("id", help="the expense id")

    progress = command(
        "progress",
        cmd_contracts_progress,
        "record a fixed-fee contract's percent complete",
        contracts,
    )
    progress.add_argument("--book", help=BOOK_HELP)
    progress.add_argument("--contract", required=True, help="a percent-complete fixed-fee contract")
    progress.add_argument("--percent", required=True, help="0 to 100, e.g. 40")
    progress.add_argument("--date", type=_date, default=None, help="default: the book's today")
    progress.add_argument(
        "--adjustment", action="store_true", help="a revised estimate may lower the percent"
    )

    wip = command("wip", cmd_report_wip, "unbilled WIP by client and age", report)
    wip.add_argument("--book", help=BOOK_HELP)
    wip.add_argument("--as-of", type=_date, default=None, help="default: the book's today")
    burn = command("retainer-burn-down", cmd_report_burn_down, "retainer hours per period", report)
    burn.add_argument("--book", help=BOOK_HELP)
    burn.add_argument("--contract", default=None, help="one retainer (default: all)")
    prof = command("profitability", cmd_report_profitability, "revenue − cost per client", report)
    prof.add_argument("--book", help=BOOK_HELP)
    prof.add_argument("--from", dest="date_from", type=_date, required=True, help="first day")
    prof.add_argument(
        "--to", dest="date_to", type=_date, required=True, help="day after the last (exclusive)"
    )
